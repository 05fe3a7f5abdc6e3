package penguinmails

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// Background work: the sweep of due secrets, the index rebuild and rotation
// jobs. Vault calls periodic about once a minute on the active node; it
// does a bounded share of the work itself and leaves the rest to one worker
// goroutine per mount, which Clean stops (unmount, seal, step-down).

// Budgets of one pass: what does not fit continues in the next pass.
const (
	sweepBudget   = 200  // due secrets handled per pass
	rebuildBudget = 1000 // secrets re-indexed per pass
	jobBudget     = 100  // job items per pass
	// sweepSlack re-reads the previous hour's bucket for a while after the
	// hour turns, for writes that took their now just before it.
	sweepSlack = 2 * time.Minute
	// retryFailedWork is when the sweep looks again at a secret whose
	// background work failed (a storage error, an entry over its bound).
	retryFailedWork = 10 * time.Minute
)

func (b *backend) lockFor(key string) *locksutil.LockEntry { return locksutil.LockForKey(b.locks, key) }

// periodic is the backend's PeriodicFunc. It only writes where writes are
// safe (not on a performance standby or secondary, which would reject them).
func (b *backend) periodic(ctx context.Context, req *logical.Request) (err error) {
	defer b.recoverBackground("periodic", &err)
	if !b.WriteSafeReplicationState() {
		return nil
	}
	b.periodicStarted.Store(true)
	more, err := b.workPass(ctx, req.Storage)
	if more || err != nil {
		b.ensureWorker(req.Storage)
	}
	return err
}

// workPass does one bounded pass of every kind of background work and
// reports whether any is left. Passes never overlap: one from periodic
// while the worker runs one is skipped (and the worker is kicked).
func (b *backend) workPass(ctx context.Context, s logical.Storage) (bool, error) {
	if !b.workMu.TryLock() {
		b.kickWorker()
		return false, nil
	}
	defer b.workMu.Unlock()
	if err := b.ensureIndex(ctx, s); err != nil {
		return true, err
	}
	if err := b.flushUses(ctx, s); err != nil {
		b.Logger().Warn("flushing use counts failed; they are kept for the next pass", "error", err)
	}
	// The rebuild first: at first start it is what puts the secrets
	// written before into the buckets the sweep reads.
	moreIndex, err := b.rebuildBatch(ctx, s, rebuildBudget)
	if err != nil {
		return true, err
	}
	// Scheduled work keeps Vault's pace: after a failover or an unseal it
	// starts with Vault's first periodic call, even when a job started the
	// worker earlier.
	moreDue := false
	if b.periodicStarted.Load() {
		if moreDue, err = b.sweep(ctx, s, sweepBudget); err != nil {
			return true, err
		}
	}
	moreJobs, err := b.runJobs(ctx, s, jobBudget)
	return moreDue || moreIndex || moreJobs, err
}

// initialize runs when the mount starts on an active node (mount, unseal,
// failover): an unfinished job, which is incident response, resumes at once
// instead of at the first periodic call up to a minute later. Scheduled
// work waits for that call, as Vault paces it.
func (b *backend) initialize(ctx context.Context, req *logical.InitializationRequest) (err error) {
	defer b.recoverBackground("initialize", &err)
	if !b.WriteSafeReplicationState() {
		return nil
	}
	queued, err := req.Storage.List(ctx, jobQueuePrefix)
	if err != nil || len(queued) == 0 {
		return err
	}
	b.ensureWorker(req.Storage)
	return nil
}

// indexMetaPath marks a mount whose index exists. A mount written by an
// older version has none: its first pass starts a rebuild.
const indexMetaPath = "index/meta"

func (b *backend) ensureIndex(ctx context.Context, s logical.Storage) error {
	if b.indexReady.Load() {
		return nil
	}
	raw, err := s.Get(ctx, indexMetaPath)
	if err != nil {
		return err
	}
	if raw == nil {
		if err := b.startIndexRebuild(ctx, s, "first start with a due index"); err != nil {
			return err
		}
		// The sweep starts here; the rebuild moves what is already due into
		// the current hour's bucket.
		cursor, err := loadSweepCursor(ctx, s, b.now())
		if err != nil {
			return err
		}
		if err := saveSweepCursor(ctx, s, cursor); err != nil {
			return err
		}
		entry, err := logical.StorageEntryJSON(indexMetaPath, map[string]interface{}{"version": 1, "created": b.now()})
		if err != nil {
			return err
		}
		if err := s.Put(ctx, entry); err != nil {
			return err
		}
	}
	b.indexReady.Store(true)
	return nil
}

// sweep handles the secrets whose work time has come, from the stored
// cursor hour to now, at most budget of them. It reports whether more are
// due.
func (b *backend) sweep(ctx context.Context, s logical.Storage, budget int) (bool, error) {
	now := b.now()
	cursor, err := loadSweepCursor(ctx, s, now)
	if err != nil {
		return true, err
	}
	held := false // the cursor stops at an hour it could not finish
	for hour := cursor; !hour.After(now); hour = hour.Add(time.Hour) {
		bucket := indexWorkPrefix + hourBucket(hour) + "/"
		names, err := listChildren(ctx, s, bucket)
		if err != nil {
			return true, err
		}
		for _, n := range names {
			it, ok := parseItem(n)
			if !ok {
				if err := s.Delete(ctx, bucket+n); err != nil {
					return true, err
				}
				continue
			}
			if it.at.After(now) {
				break // sorted by time: the rest of the bucket is not due
			}
			if budget == 0 || ctx.Err() != nil {
				return true, nil
			}
			budget--
			if err := b.maintain(ctx, s, it, bucket+n); err != nil {
				b.Logger().Warn("background work on a secret failed; it is retried", "secret", it.kind+"/"+it.tenant+"/"+it.name, "error", err)
				// A copy of its index key, due later, brings it back; the
				// entry's own key is dropped once it no longer matches.
				// Without the copy the cursor must wait at this hour.
				if err := putRetryKey(ctx, s, it, now.Add(retryFailedWork)); err != nil {
					held = true
				}
			}
		}
		// A past hour is finished once the hour plus the slack is over.
		if !held && !hour.Add(time.Hour+sweepSlack).After(now) {
			if err := saveSweepCursor(ctx, s, hour.Add(time.Hour)); err != nil {
				return true, err
			}
		}
	}
	return false, nil
}

func putRetryKey(ctx context.Context, s logical.Storage, it indexItem, at time.Time) error {
	key := indexWorkPrefix + hourBucket(at) + "/" + itemName(at, it.kind, it.tenant, it.name)
	return s.Put(ctx, &logical.StorageEntry{Key: key})
}

func loadSweepCursor(ctx context.Context, s logical.Storage, now time.Time) (time.Time, error) {
	raw, err := s.Get(ctx, indexSweepPath)
	if err != nil {
		return time.Time{}, err
	}
	if raw == nil {
		return now.Truncate(time.Hour).Add(-time.Hour), nil
	}
	t, err := time.Parse(hourLayout, string(raw.Value))
	if err != nil {
		return now.Truncate(time.Hour).Add(-time.Hour), nil
	}
	return t, nil
}

func saveSweepCursor(ctx context.Context, s logical.Storage, hour time.Time) error {
	return s.Put(ctx, &logical.StorageEntry{Key: indexSweepPath, Value: []byte(hourBucket(hour))})
}

// maintain does the work that is due on one secret, judged from its stored
// timestamps: it ends overlaps, sends the rotation-due event, and rotates it
// when a time or threshold trigger has fired. key is the index key that
// brought it here; it is dropped when the entry no longer points at it.
func (b *backend) maintain(ctx context.Context, s logical.Storage, it indexItem, key string) (err error) {
	defer b.recoverBackground("maintain", &err)
	kind := b.kinds[it.kind]
	if kind == nil {
		return s.Delete(ctx, key)
	}
	ref := secretRef{kind: kind, tenant: it.tenant, name: it.name}
	trigger, e, err := b.upkeep(ctx, s, ref)
	if err != nil {
		return err
	}
	if trigger != "" {
		r := rotation{Trigger: trigger, Reason: triggerReasons[trigger], Actor: schedulerActor,
			only: func(e *secretEntry, pol typePolicy, now time.Time) string {
				if e.dueTrigger(pol, now) == "" {
					return "no longer due"
				}
				return ""
			}}
		var rotErr error
		if e, rotErr = b.rotate(ctx, s, ref, r); rotErr != nil && !isStepError(rotErr) {
			if _, skip := rotErr.(*skipped); !skip {
				return rotErr
			}
		}
	}
	if e == nil || e.Indexed.Work != key {
		return s.Delete(ctx, key)
	}
	return nil
}

var triggerReasons = map[string]string{
	triggerTime:      "rotation period elapsed",
	triggerThreshold: "max_uses reached",
}

// upkeep persists what the clock has done to one secret (ended overlaps,
// versions beyond max_versions), removes credentials that left service from
// outside systems (removal.go), and sends the rotation-due event. It returns the trigger that has
// fired, if any.
func (b *backend) upkeep(ctx context.Context, s logical.Storage, ref secretRef) (string, *secretEntry, error) {
	var probe *activationProbe
	if ref.kind.checkReady != nil { // before the lock: it may wait on DNS
		cfg, err := b.config(ctx, s)
		if err != nil {
			return "", nil, err
		}
		probe = b.probeActivation(ctx, s, ref, cfg)
	}
	lock := b.lockFor(ref.key())
	lock.Lock()
	defer lock.Unlock()
	cfg, err := b.config(ctx, s)
	if err != nil {
		return "", nil, err
	}
	e, size, err := loadSecretChecked(ctx, s, ref)
	if err != nil || e == nil {
		if size > 0 {
			return "", nil, noteUnreadable(ctx, s, ref.kind.Name, ref.tenant, ref.name, size)
		}
		return "", nil, err
	}
	now := b.now()
	pol := ref.kind.policy(cfg, ref.name)
	if _, err := e.derive(ref.kind, cfg, now); err != nil {
		return "", nil, err
	}
	b.removeDue(ctx, e, ref.kind, cfg, now)
	if _, err := b.checkActivation(ctx, e, ref.kind, cfg, now, probe); err != nil {
		return "", nil, err
	}
	if at := e.alertStart(pol); !at.IsZero() && !now.Before(at) {
		e.DueNotified = e.nextRotation(pol)
		b.emit(ctx, "rotation-due", e, "next_rotation", formatTime(e.DueNotified))
	}
	if err := b.store(ctx, s, e, ref.kind, cfg, now); err != nil {
		return "", nil, err
	}
	return e.dueTrigger(pol, now), e, nil
}

// recoverBackground turns a panic in background work into an error, so that
// one secret can never kill the process that serves every mount. The panic
// value is not logged: it could hold secret data.
func (b *backend) recoverBackground(where string, err *error) {
	if p := recover(); p != nil {
		b.Logger().Error("recovered from a panic in background work", "where", where)
		*err = fmt.Errorf("internal error in %s", where)
	}
}

// worker is the mount's one background goroutine.
type worker struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	kick   chan struct{}
}

// ensureWorker starts the worker if it is not running. It runs passes until
// no work is left, then waits for a kick.
func (b *backend) ensureWorker(s logical.Storage) {
	w := &b.worker
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		b.kickWorker()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done, w.kick = cancel, make(chan struct{}), make(chan struct{}, 1)
	go b.runWorker(ctx, s, w.done, w.kick)
	b.kickWorker()
}

func (b *backend) kickWorker() {
	select {
	case b.worker.kick <- struct{}{}:
	default:
	}
}

func (b *backend) runWorker(ctx context.Context, s logical.Storage, done chan struct{}, kick chan struct{}) {
	defer close(done)
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		for ctx.Err() == nil {
			more, err := b.safePass(ctx, s)
			if err != nil && ctx.Err() == nil {
				b.Logger().Warn("background pass failed; retried on the next tick", "error", err)
				break
			}
			if !more {
				break
			}
		}
	}
}

func (b *backend) safePass(ctx context.Context, s logical.Storage) (more bool, err error) {
	defer b.recoverBackground("worker", &err)
	return b.workPass(ctx, s)
}

// stopWorker cancels the worker and waits for it, at most a few seconds: a
// hook that ignores its context cannot hold up a seal.
func (b *backend) stopWorker() {
	w := &b.worker
	w.mu.Lock()
	cancel, done := w.cancel, w.done
	w.cancel, w.done = nil, nil
	w.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		b.Logger().Warn("background worker did not stop within 5s")
	}
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
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := fn(tenant, name); err != nil {
				return err
			}
		}
	}
	return nil
}

// splitSecretKey splits secrets/{kind}/{tenant}/{name}.
func splitSecretKey(key string) (kind, tenant, name string, ok bool) {
	parts := strings.SplitN(strings.TrimPrefix(key, secretsStoragePrefix), "/", 3)
	if len(parts) != 3 {
		return "", "", "", false
	}
	return parts[0], parts[1], parts[2], true
}
