package penguinmails

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-multierror"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// scheduler is an in-memory index of the next time each secret needs work
// (an automatic rotation, or the end of a grace period). It is only an index:
// the work itself is re-derived from the stored entry under its lock, and the
// index is rebuilt from storage by a full scan whenever it is reset (a new
// active node, a config change), so nothing is lost if it is.
type scheduler struct {
	mu     sync.Mutex
	loaded bool
	// resets counts resets, so that a scan that one overtook (and whose
	// earlier entries it dropped) does not mark the index loaded.
	resets uint64
	next   map[string]time.Time
}

func newScheduler() *scheduler { return &scheduler{next: map[string]time.Time{}} }

func (s *scheduler) reset() {
	s.mu.Lock()
	s.loaded = false
	s.resets++
	s.next = map[string]time.Time{}
	s.mu.Unlock()
}

// set records when key next needs work; the zero time removes it.
func (s *scheduler) set(key string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at.IsZero() {
		delete(s.next, key)
		return
	}
	s.next[key] = at
}

func (s *scheduler) due(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k, at := range s.next {
		if !at.After(now) {
			keys = append(keys, k)
		}
	}
	return keys
}

// nextWork is the earliest time the secret needs the scheduler: the end of a
// grace period, or its next rotation when it rotates automatically.
func nextWork(e *secretEntry, kind *secretKind, cfg *engineConfig) time.Time {
	var at time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	for _, v := range e.Versions {
		if kind.graceStatus != "" && v.Status == kind.graceStatus {
			earlier(v.GraceUntil)
		}
	}
	if cur := e.current(); e.AutoRotate && cur != nil && cur.Status == statusActive {
		earlier(e.nextRotation(kind.policy(cfg)))
	}
	return at
}

func (b *backend) reschedule(e *secretEntry, kind *secretKind, cfg *engineConfig, _ time.Time) {
	b.sched.set(e.storageKey(), nextWork(e, kind, cfg))
}

func (b *backend) lockFor(key string) *locksutil.LockEntry { return locksutil.LockForKey(b.locks, key) }

// periodic is the backend's PeriodicFunc. Vault calls it about once a minute
// on the active node; it only writes where writes are safe (not on a
// performance standby or secondary, which would reject them).
func (b *backend) periodic(ctx context.Context, req *logical.Request) error {
	if !b.WriteSafeReplicationState() {
		return nil
	}
	cfg, err := b.config(ctx, req.Storage)
	if err != nil {
		return err
	}
	if err := b.loadSchedule(ctx, req.Storage, cfg); err != nil {
		return err
	}
	var merr *multierror.Error
	for _, key := range b.sched.due(b.now()) {
		if ctx.Err() != nil {
			break // the rest stay due and are picked up by the next tick
		}
		if err := b.maintain(ctx, req.Storage, key, cfg); err != nil {
			merr = multierror.Append(merr, err)
		}
	}
	return merr.ErrorOrNil()
}

// loadSchedule fills the index from storage once per reset.
func (b *backend) loadSchedule(ctx context.Context, s logical.Storage, cfg *engineConfig) error {
	b.sched.mu.Lock()
	loaded, resets := b.sched.loaded, b.sched.resets
	b.sched.mu.Unlock()
	if loaded {
		return nil
	}
	for _, kind := range b.sortedKinds() {
		err := walkSecretNames(ctx, s, kind.Name, "", func(tenant, name string) error {
			// Read under the secret's lock, so that a write racing the scan
			// is either seen here or reschedules after it; never undone.
			key := secretStorageKey(kind.Name, tenant, name)
			lock := b.lockFor(key)
			lock.Lock()
			defer lock.Unlock()
			e, err := loadSecret(ctx, s, kind.Name, tenant, name)
			if err != nil {
				return err
			}
			if e == nil {
				b.sched.set(key, time.Time{})
				return nil
			}
			// A config change (a lower max_versions) resets the index, so
			// this scan is where the versions it hides leave storage.
			if err := b.persistDerived(ctx, s, e, kind, cfg); err != nil {
				return err
			}
			b.reschedule(e, kind, cfg, time.Time{})
			return nil
		})
		if err != nil {
			return err
		}
	}
	b.sched.mu.Lock()
	// A reset during the scan cleared what it had added: scan again next tick.
	b.sched.loaded = b.sched.resets == resets
	b.sched.mu.Unlock()
	return nil
}

// maintain does whatever work is due on one secret, judged from its stored
// timestamps: it ends grace periods and rotates it when automatic rotation is
// on and the period has elapsed.
func (b *backend) maintain(ctx context.Context, s logical.Storage, key string, cfg *engineConfig) error {
	parts := strings.SplitN(strings.TrimPrefix(key, secretsStoragePrefix), "/", 3)
	kind := b.kinds[parts[0]]
	if len(parts) != 3 || kind == nil {
		b.sched.set(key, time.Time{})
		return nil
	}
	lock := b.lockFor(key)
	lock.Lock()
	defer lock.Unlock()

	e, err := loadSecret(ctx, s, kind.Name, parts[1], parts[2])
	if err != nil {
		return err
	}
	if e == nil {
		b.sched.set(key, time.Time{})
		return nil
	}
	now := b.now()
	changed, err := e.derive(kind, cfg, now)
	if err != nil {
		return err
	}
	rotated := false
	if cur := e.current(); e.AutoRotate && cur != nil && cur.Status == statusActive && e.rotationStatus(kind.policy(cfg), now) == rotationOverdue {
		r := rotation{Trigger: triggerTime, Reason: "rotation period elapsed", Actor: schedulerActor}
		if rotErr := b.rotateEntry(ctx, e, kind, cfg, r, now); rotErr == nil {
			changed, rotated = true, true
		} else {
			b.emit(ctx, "rotate-fail", e, "trigger", triggerTime)
			b.Logger().Warn("scheduled rotation failed; will retry", "secret", kind.Name+"/"+e.Tenant+"/"+e.Name, "error", rotErr)
			// The failed attempt may have changed e part way: record the
			// failure on what is stored, not on that.
			if e, err = loadSecret(ctx, s, kind.Name, parts[1], parts[2]); err != nil || e == nil {
				return err
			}
			if _, err := e.derive(kind, cfg, now); err != nil {
				return err
			}
			e.noteRotationFailure(r, now, rotErr)
			changed = true
		}
	}
	if changed {
		if err := saveSecret(ctx, s, e); err != nil {
			return err
		}
	}
	if rotated {
		b.emit(ctx, "rotate", e, "trigger", triggerTime)
	}
	b.reschedule(e, kind, cfg, now)
	return nil
}

// persistDerived saves what derive changes on a stored entry (ended grace
// periods, versions beyond max_versions). The caller holds the lock.
func (b *backend) persistDerived(ctx context.Context, s logical.Storage, e *secretEntry, kind *secretKind, cfg *engineConfig) error {
	changed, err := e.derive(kind, cfg, b.now())
	if err != nil || !changed {
		return err
	}
	return saveSecret(ctx, s, e)
}

// walkSecrets calls fn for every stored secret of one type, of one tenant
// or, when tenant is empty, of all.
func walkSecrets(ctx context.Context, s logical.Storage, kind, tenant string, fn func(*secretEntry) error) error {
	return walkSecretNames(ctx, s, kind, tenant, func(tenant, name string) error {
		e, err := loadSecret(ctx, s, kind, tenant, name)
		if err != nil || e == nil {
			return err
		}
		return fn(e)
	})
}

// walkSecretNames calls fn with the tenant and name of every stored secret
// of one type (of one tenant, or of all when tenant is empty), reading none.
func walkSecretNames(ctx context.Context, s logical.Storage, kind, tenant string, fn func(tenant, name string) error) error {
	tenants := []string{tenant}
	if tenant == "" {
		var err error
		if tenants, err = listChildren(ctx, s, secretsStoragePrefix+kind+"/"); err != nil {
			return err
		}
	}
	for _, tenant := range tenants {
		names, err := listChildren(ctx, s, secretsStoragePrefix+kind+"/"+tenant+"/")
		if err != nil {
			return err
		}
		for _, name := range names {
			if err := fn(tenant, name); err != nil {
				return err
			}
		}
	}
	return nil
}
