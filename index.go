package penguinmails

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// The due index. Storage can only list a folder by reading every key under
// it, so the index is cut into time buckets that are found by computing
// their names, never by listing their parent:
//
//	index/work/{YYYYMMDDHH}/{unix}:{kind}:{tenant}:{name}
//	    when the worker must next look at a secret (nextWork). A time in
//	    the past goes into the current hour's bucket. The worker sweeps the
//	    buckets from a persisted cursor (index/sweep) to now, so one tick
//	    reads what is due, not what is stored.
//	index/due/{YYYYMMDD|never}/{unix}:{kind}:{tenant}:{name}
//	    every secret by next_rotation, for rotation/status; index/days/
//	    holds one marker per day bucket (a few thousand at most).
//	index/failing/{kind}:{tenant}:{name}
//	    secrets whose last rotation failed.
//	index/unreadable/{kind}:{tenant}:{name}
//	    entries that could not be decoded; skipped and reported.
//
// The entry records the keys written for it (secretEntry.Indexed). A change
// puts the new keys before the entry and deletes the old ones after it, so a
// crash leaves at worst an extra key, which the sweep or status checks
// against the entry and drops; never a secret missing from the index.
const (
	indexWorkPrefix       = "index/work/"
	indexDuePrefix        = "index/due/"
	indexDaysPrefix       = "index/days/"
	indexFailingPrefix    = "index/failing/"
	indexUnreadablePrefix = "index/unreadable/"
	indexSweepPath        = "index/sweep"
	indexRebuildPath      = "index/rebuild"
	neverDay              = "never"
	hourLayout            = "2006010215"
	dayLayout             = "20060102"
)

// indexKeys are the index keys written for one entry.
type indexKeys struct {
	Due     string `json:"due,omitempty"`
	Work    string `json:"work,omitempty"`
	Failing bool   `json:"failing,omitempty"`
}

// indexItem is one secret in a bucket: its time and its path.
type indexItem struct {
	at                 time.Time
	kind, tenant, name string
}

func itemName(at time.Time, kind, tenant, name string) string {
	var unix int64
	if !at.IsZero() {
		unix = at.Unix()
	}
	return fmt.Sprintf("%012d:%s:%s:%s", unix, kind, tenant, name)
}

// parseItem reads a bucket's child name. Tenants and names cannot hold ":".
func parseItem(s string) (indexItem, bool) {
	parts := strings.SplitN(s, ":", 4)
	if len(parts) != 4 {
		return indexItem{}, false
	}
	unix, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil {
		return indexItem{}, false
	}
	it := indexItem{kind: parts[1], tenant: parts[2], name: parts[3]}
	if unix > 0 {
		it.at = time.Unix(unix, 0).UTC()
	}
	return it, true
}

func secretID(kind, tenant, name string) string { return kind + ":" + tenant + ":" + name }

func hourBucket(t time.Time) string { return t.UTC().Format(hourLayout) }

func dayBucket(t time.Time) string {
	if t.IsZero() {
		return neverDay
	}
	return t.UTC().Format(dayLayout)
}

// indexKeysFor computes the keys e must have now.
func indexKeysFor(e *secretEntry, kind *secretKind, cfg *engineConfig, now time.Time) indexKeys {
	next := e.nextRotation(kind.policy(cfg, e.Name))
	keys := indexKeys{
		Due:     indexDuePrefix + dayBucket(next) + "/" + itemName(next, e.Kind, e.Tenant, e.Name),
		Failing: e.LastRotationError != "" || e.Halted != "" || e.removalsFailing(),
	}
	if at := e.nextWork(kind, cfg); !at.IsZero() {
		bucket := at
		if bucket.Before(now) {
			bucket = now // the sweep never goes back before the current hour
		}
		keys.Work = indexWorkPrefix + hourBucket(bucket) + "/" + itemName(at, e.Kind, e.Tenant, e.Name)
	}
	return keys
}

// store saves e with one Put and keeps its index keys in step. The entry
// cache then holds what was written (decoded from the bytes stored, so it is
// exactly what a read from storage returns); a failed Put drops it, since
// storage may or may not hold the new entry.
func (b *backend) store(ctx context.Context, s logical.Storage, e *secretEntry, kind *secretKind, cfg *engineConfig, now time.Time) error {
	old, next := e.Indexed, indexKeysFor(e, kind, cfg, now)
	id := secretID(e.Kind, e.Tenant, e.Name)
	if err := b.putIndex(ctx, s, old, next, id); err != nil {
		return err
	}
	e.Indexed = next
	written, err := putSecret(ctx, s, e)
	if err != nil {
		b.entries.drop(e.storageKey())
		e.Indexed = old
		return err // the new keys are extra keys, dropped when visited
	}
	b.cacheWritten(e.storageKey(), written)
	return dropIndex(ctx, s, old, next, id)
}

// cacheWritten replaces the cached entry at key with the bytes just stored.
func (b *backend) cacheWritten(key string, written []byte) {
	stored, err := decodeSecret(written)
	if err != nil { // cannot happen for bytes just encoded; be safe
		b.entries.drop(key)
		return
	}
	b.entries.replace(key, stored)
}

func (b *backend) putIndex(ctx context.Context, s logical.Storage, old, next indexKeys, id string) error {
	if next.Due != old.Due {
		if err := b.markDay(ctx, s, next.Due); err != nil {
			return err
		}
		if err := s.Put(ctx, &logical.StorageEntry{Key: next.Due}); err != nil {
			return err
		}
	}
	if next.Work != "" && next.Work != old.Work {
		if err := s.Put(ctx, &logical.StorageEntry{Key: next.Work}); err != nil {
			return err
		}
	}
	if next.Failing && !old.Failing {
		return s.Put(ctx, &logical.StorageEntry{Key: indexFailingPrefix + id})
	}
	return nil
}

func dropIndex(ctx context.Context, s logical.Storage, old, next indexKeys, id string) error {
	for _, k := range []string{old.Due, old.Work} {
		if k != "" && k != next.Due && k != next.Work {
			if err := s.Delete(ctx, k); err != nil {
				return err
			}
		}
	}
	if old.Failing && !next.Failing {
		return s.Delete(ctx, indexFailingPrefix+id)
	}
	return nil
}

// markDay records that the day bucket of a due key is in use. Markers are
// never removed (one per day); the cache saves a Put per write.
func (b *backend) markDay(ctx context.Context, s logical.Storage, dueKey string) error {
	day := strings.SplitN(strings.TrimPrefix(dueKey, indexDuePrefix), "/", 2)[0]
	if _, ok := b.dayMarks.Load(day); ok {
		return nil
	}
	if err := s.Put(ctx, &logical.StorageEntry{Key: indexDaysPrefix + day}); err != nil {
		return err
	}
	b.dayMarks.Store(day, true)
	return nil
}

// unstore deletes the secret stored at ref, then its index keys. The key
// comes from the path, not from e's own kind, tenant and name: an entry
// copied to another path (a conflicting DKIM pair from before claims)
// names its original, which a delete of the copy must leave alone, entry
// and index keys both. The cached entry is dropped, deleted or not.
func (b *backend) unstore(ctx context.Context, s logical.Storage, ref secretRef, e *secretEntry) error {
	err := s.Delete(ctx, ref.key())
	b.entries.drop(ref.key())
	if err != nil {
		return err
	}
	id := secretID(ref.kind.Name, ref.tenant, ref.name)
	own := e.Indexed
	for _, k := range []*string{&own.Due, &own.Work} {
		if !strings.HasSuffix(*k, ":"+id) { // {unix}:{kind}:{tenant}:{name}; no part holds ":"
			*k = ""
		}
	}
	return dropIndex(ctx, s, own, indexKeys{}, id)
}

// noteUnreadable records an entry that could not be decoded. The message
// names the entry and its size, never its content.
func noteUnreadable(ctx context.Context, s logical.Storage, kind, tenant, name string, size int) error {
	entry, err := logical.StorageEntryJSON(indexUnreadablePrefix+secretID(kind, tenant, name), map[string]interface{}{
		"path": kind + "/" + tenant + "/" + name, "bytes": size, "error": "stored entry cannot be decoded",
	})
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

// rebuildState is the persisted progress of an index rebuild.
type rebuildState struct {
	Reason   string    `json:"reason"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitempty"`
	// Kind and After are the cursor: every tenant of kinds before Kind, and
	// of Kind up to After, is done.
	Kind       string `json:"kind"`
	After      string `json:"after"`
	Done       int    `json:"done"`
	Unreadable int    `json:"unreadable"`
}

func loadRebuild(ctx context.Context, s logical.Storage) (*rebuildState, error) {
	raw, err := s.Get(ctx, indexRebuildPath)
	if err != nil || raw == nil {
		return nil, err
	}
	var st rebuildState
	if err := raw.DecodeJSON(&st); err != nil {
		return nil, err
	}
	return &st, nil
}

func saveRebuild(ctx context.Context, s logical.Storage, st *rebuildState) error {
	entry, err := logical.StorageEntryJSON(indexRebuildPath, st)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

// startIndexRebuild (re)starts the rebuild from the first secret. The worker
// runs it in batches; a restart resumes from the stored cursor.
func (b *backend) startIndexRebuild(ctx context.Context, s logical.Storage, reason string) error {
	b.rebuildTenants.Store((*tenantList)(nil))
	// Day markers are written again as the rebuild meets their days.
	b.dayMarks.Range(func(day, _ interface{}) bool { b.dayMarks.Delete(day); return true })
	st := &rebuildState{Reason: reason, Started: b.now()}
	if kinds := b.sortedKinds(); len(kinds) > 0 {
		st.Kind = kinds[0].Name
	}
	if err := saveRebuild(ctx, s, st); err != nil {
		return err
	}
	b.kickWorker()
	return nil
}

// tenantList caches the tenants of one kind for the rebuild in progress:
// listing them reads every key below, so it is done once per kind.
type tenantList struct {
	started time.Time
	kind    string
	tenants []string
}

// rebuildBatch indexes at least budget secrets (whole tenants) from the
// stored cursor. It reports whether a rebuild is still unfinished.
func (b *backend) rebuildBatch(ctx context.Context, s logical.Storage, budget int) (bool, error) {
	st, err := loadRebuild(ctx, s)
	if err != nil || st == nil || !st.Finished.IsZero() {
		return false, err
	}
	cfg, err := b.config(ctx, s)
	if err != nil {
		return true, err
	}
	kinds := b.sortedKinds()
	ki := sort.Search(len(kinds), func(i int) bool { return kinds[i].Name >= st.Kind })
	for done := 0; ki < len(kinds) && done < budget; {
		if ctx.Err() != nil {
			return true, nil
		}
		k := kinds[ki]
		tenants, err := b.rebuildTenantsOf(ctx, s, st, k.Name)
		if err != nil {
			return true, err
		}
		i := sort.SearchStrings(tenants, st.After)
		if i < len(tenants) && tenants[i] == st.After {
			i++
		}
		if i >= len(tenants) {
			ki++
			st.After = ""
			if ki < len(kinds) {
				st.Kind = kinds[ki].Name
			}
			continue
		}
		n, bad, err := b.reindexTenant(ctx, s, k, tenants[i], cfg)
		if err != nil {
			return true, err
		}
		done += n
		st.Done += n
		st.Unreadable += bad
		st.After = tenants[i]
		if err := saveRebuild(ctx, s, st); err != nil {
			return true, err
		}
	}
	if ki < len(kinds) {
		return true, nil
	}
	st.Finished = b.now()
	b.rebuildTenants.Store((*tenantList)(nil))
	b.Logger().Info("index rebuild finished", "reason", st.Reason, "secrets", st.Done, "unreadable", st.Unreadable)
	return false, saveRebuild(ctx, s, st)
}

func (b *backend) rebuildTenantsOf(ctx context.Context, s logical.Storage, st *rebuildState, kind string) ([]string, error) {
	if c, _ := b.rebuildTenants.Load().(*tenantList); c != nil && c.kind == kind && c.started.Equal(st.Started) {
		return c.tenants, nil
	}
	tenants, err := listChildren(ctx, s, secretsStoragePrefix+kind+"/")
	if err != nil {
		return nil, err
	}
	b.rebuildTenants.Store(&tenantList{started: st.Started, kind: kind, tenants: tenants})
	return tenants, nil
}

// reindexTenant brings the index keys of one tenant's secrets of kind k in
// step, writing only the entries whose keys changed, and every key.
func (b *backend) reindexTenant(ctx context.Context, s logical.Storage, k *secretKind, tenant string, cfg *engineConfig) (int, int, error) {
	names, err := listChildren(ctx, s, secretsStoragePrefix+k.Name+"/"+tenant+"/")
	if err != nil {
		return 0, 0, err
	}
	bad := 0
	for _, name := range names {
		ok, err := b.reindexOne(ctx, s, secretRef{kind: k, tenant: tenant, name: name}, cfg)
		if err != nil {
			return 0, 0, err
		}
		if !ok {
			bad++
		}
	}
	return len(names), bad, nil
}

// reindexOne re-derives one secret's index keys; false means unreadable.
func (b *backend) reindexOne(ctx context.Context, s logical.Storage, ref secretRef, cfg *engineConfig) (bool, error) {
	lock := b.lockFor(ref.key())
	lock.Lock()
	defer lock.Unlock()
	e, size, err := loadSecretChecked(ctx, s, ref)
	if err != nil {
		return false, err
	}
	if e == nil {
		if size > 0 {
			return false, noteUnreadable(ctx, s, ref.kind.Name, ref.tenant, ref.name, size)
		}
		return true, nil
	}
	now := b.now()
	changed, err := e.derive(ref.kind, cfg, now)
	if err != nil {
		return false, noteUnreadable(ctx, s, ref.kind.Name, ref.tenant, ref.name, size)
	}
	if !changed && indexKeysFor(e, ref.kind, cfg, now) == e.Indexed {
		// The entry is right, but the keys it names may be what was lost:
		// write them again (a Put of an existing key changes nothing).
		return true, b.putIndex(ctx, s, indexKeys{}, e.Indexed, secretID(e.Kind, e.Tenant, e.Name))
	}
	return true, b.store(ctx, s, e, ref.kind, cfg, now)
}

// loadSecretChecked reads one secret; an entry that cannot be decoded is
// (nil, its size, nil), so that the caller can skip and report it.
func loadSecretChecked(ctx context.Context, s logical.Storage, ref secretRef) (*secretEntry, int, error) {
	raw, err := s.Get(ctx, ref.key())
	if err != nil || raw == nil {
		return nil, 0, err
	}
	var e secretEntry
	if err := raw.DecodeJSON(&e); err != nil {
		return nil, len(raw.Value), nil
	}
	return &e, len(raw.Value), nil
}
