package penguinmails

import (
	"context"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Use counts of the threshold trigger (max_uses). A read must not become a
// storage write, so uses are counted in memory and added to the stored
// count by the next background pass: at the latest on the next periodic
// tick (about a minute), at once when a secret reaches its max_uses. A crash
// loses the uses counted since the last pass, at most about one minute's
// worth; a secret can therefore be used up to that many times past max_uses
// before it rotates. On a performance standby nothing is counted: it cannot
// write, and the reads it serves are not seen by the active node.
type useCounter struct {
	mu     sync.Mutex
	counts map[string]int // by secret storage key
}

// countUse notes one read (or signature) of e, if it has a max_uses. The
// use that reaches it starts the background work at once.
func (b *backend) countUse(s logical.Storage, e *secretEntry) { b.countUses(s, e, 1) }

// countUses notes n uses of e at once (the signatures of a batch).
func (b *backend) countUses(s logical.Storage, e *secretEntry, n int) {
	if n <= 0 || e.MaxUses <= 0 || !b.WriteSafeReplicationState() {
		return
	}
	u := &b.uses
	u.mu.Lock()
	if u.counts == nil {
		u.counts = map[string]int{}
	}
	key := e.storageKey()
	u.counts[key] += n
	reached := e.Uses+u.counts[key] >= e.MaxUses
	u.mu.Unlock()
	if reached {
		if b.storage != nil {
			s = b.storage // the mount's view, not one request's
		}
		b.ensureWorker(s)
	}
}

// flushUses adds the counted uses to the stored entries; what cannot be
// written now is kept for the next pass.
func (b *backend) flushUses(ctx context.Context, s logical.Storage) error {
	u := &b.uses
	u.mu.Lock()
	counts := u.counts
	u.counts = nil
	u.mu.Unlock()
	var firstErr error
	for key, n := range counts {
		if err := b.addUses(ctx, s, key, n); err != nil {
			u.mu.Lock()
			if u.counts == nil {
				u.counts = map[string]int{}
			}
			u.counts[key] += n
			u.mu.Unlock()
			if firstErr == nil {
				firstErr = err
			}
		}
	}
	return firstErr
}

func (b *backend) addUses(ctx context.Context, s logical.Storage, key string, n int) error {
	kind, tenant, name, ok := splitSecretKey(key)
	k := b.kinds[kind]
	if !ok || k == nil {
		return nil
	}
	_, err := b.modify(ctx, s, secretRef{kind: k, tenant: tenant, name: name}, func(e *secretEntry, _ *engineConfig, now time.Time) error {
		e.Uses += n
		if e.overUses() {
			e.UpdatedTime = now // the threshold trigger's work time
		}
		return nil
	})
	return err
}
