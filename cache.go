package penguinmails

import (
	"container/list"
	"context"
	"crypto"
	"crypto/sha256"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
)

// Bounds of the decoded-entry cache (config cache_size). An entry costs its
// decoded size: about 5 KiB for an SMTP login with full logs, up to about
// 40 KiB for a DKIM domain with rsa-4096 keys and a long selector list, and
// at most maxEntryBytes (768 KiB) for the largest entry the engine allows.
// The default of 10,000 entries therefore holds typically 50 to 400 MiB
// less, at most 7.5 GiB in the pathological case of every entry at the
// bound; lower cache_size on a mount of many large DKIM entries.
const (
	defaultCacheSize = 10000
	maxCacheSize     = 1000000
)

// maxSigners bounds the parsed DKIM keys kept per mount: a key is about
// 1.5 KiB (rsa-2048) to 3 KiB (rsa-4096) parsed, so at most about 30 MiB.
const maxSigners = 10000

// lru is a map bounded to limit items that drops the least recently used.
// It is not safe for concurrent use: its owner locks.
type lru[V any] struct {
	limit int
	order *list.List // front is the most recently used; values are *lruItem[V]
	items map[string]*list.Element
}

type lruItem[V any] struct {
	key   string
	value V
}

func newLRU[V any](limit int) *lru[V] {
	return &lru[V]{limit: limit, order: list.New(), items: map[string]*list.Element{}}
}

func (c *lru[V]) get(key string) (V, bool) {
	el, ok := c.items[key]
	if !ok {
		var zero V
		return zero, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruItem[V]).value, true
}

func (c *lru[V]) put(key string, value V) {
	if c.limit <= 0 {
		return
	}
	if el, ok := c.items[key]; ok {
		el.Value.(*lruItem[V]).value = value
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&lruItem[V]{key: key, value: value})
	c.evict()
}

func (c *lru[V]) remove(key string) {
	if el, ok := c.items[key]; ok {
		c.order.Remove(el)
		delete(c.items, key)
	}
}

func (c *lru[V]) setLimit(limit int) {
	c.limit = limit
	c.evict()
}

func (c *lru[V]) evict() {
	for c.order.Len() > max(c.limit, 0) {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*lruItem[V]).key)
	}
}

func (c *lru[V]) clear() {
	c.order.Init()
	c.items = map[string]*list.Element{}
}

func (c *lru[V]) len() int { return c.order.Len() }

// entryCache keeps decoded secret entries of one mount by storage key, so a
// read costs neither a storage round trip over the plugin's gRPC channel nor
// a JSON decode of the whole entry.
//
// It holds exactly what storage holds: a write on this node replaces the
// entry after its Put succeeded (b.store, under the secret's lock), a delete
// drops it (b.unstore), and a change made on another node drops it through
// Invalidate, which Vault calls on standbys and performance standbys for
// every key the active node writes. Only entries found are cached.
//
// A read that misses races with writes and invalidations: it may fetch the
// old entry from storage and try to cache it after a write replaced it. Each
// key falls in one of cacheStripes generations, bumped by every replace and
// drop; a fill is kept only if its stripe's generation did not move since the
// read began, so the cache never serves an entry older than the last write
// or invalidation this node saw.
//
// Entries are shared by readers only through deep copies (secretEntry.clone):
// callers derive and modify what they load.
type entryCache struct {
	mu      sync.Mutex
	entries *lru[*secretEntry]
	gens    [cacheStripes]uint64
	seed    maphash.Seed
}

const cacheStripes = 256

func newEntryCache(limit int) *entryCache {
	return &entryCache{entries: newLRU[*secretEntry](limit), seed: maphash.MakeSeed()}
}

func (c *entryCache) stripe(key string) int {
	return int(maphash.String(c.seed, key) % cacheStripes)
}

// lookup returns a copy of the cached entry at key, or nil and the ticket a
// fill of key must present.
func (c *entryCache) lookup(key string) (*secretEntry, uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries.get(key); ok {
		return e.clone(), 0
	}
	return nil, c.gens[c.stripe(key)]
}

// fill caches a copy of e, read from storage after lookup gave ticket,
// unless a write or an invalidation of the stripe came in between.
func (c *entryCache) fill(key string, ticket uint64, e *secretEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries.limit > 0 && c.gens[c.stripe(key)] == ticket {
		c.entries.put(key, e.clone())
	}
}

// replace caches e, which storage now holds at key. e must be the cache's
// own: nobody else may hold it.
func (c *entryCache) replace(key string, e *secretEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[c.stripe(key)]++
	c.entries.put(key, e)
}

// drop forgets key: it was deleted, changed elsewhere, or its write failed
// in a way that leaves storage unknown.
func (c *entryCache) drop(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gens[c.stripe(key)]++
	c.entries.remove(key)
}

// clear forgets everything (Clean: the mount goes away or the node steps
// down).
func (c *entryCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range c.gens {
		c.gens[i]++
	}
	c.entries.clear()
}

// setLimit applies config cache_size; 0 disables the cache.
func (c *entryCache) setLimit(limit int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if limit != c.entries.limit {
		c.entries.setLimit(limit)
	}
}

func (c *entryCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.entries.len()
}

// clone copies e deeply enough that nothing the copy's user can change
// reaches e: every slice is copied with its exact length as capacity, so an
// append to the copy never writes into e's array. Material, Settings and a
// removal's Material (json.RawMessage) are shared: the engine only ever
// replaces them whole, never writes into their bytes
// (TestEntryClone_CopiesEveryReference lists the fields).
func (e *secretEntry) clone() *secretEntry {
	c := *e
	c.Versions = exactCopy(e.Versions)
	c.Removals = exactCopy(e.Removals)
	c.History = exactCopy(e.History)
	c.Access = exactCopy(e.Access)
	return &c
}

func exactCopy[T any](s []T) []T {
	if s == nil {
		return nil
	}
	out := make([]T, len(s))
	copy(out, s)
	return out
}

// loadEntry reads one secret through the mount's cache; a missing one is
// (nil, nil). The entry returned is the caller's own.
func (b *backend) loadEntry(ctx context.Context, s logical.Storage, kind, tenant, name string) (*secretEntry, error) {
	key := secretStorageKey(kind, tenant, name)
	e, ticket := b.entries.lookup(key)
	if e != nil {
		return e, nil
	}
	raw, err := s.Get(ctx, key)
	if err != nil || raw == nil {
		return nil, err
	}
	if e, err = decodeSecret(raw.Value); err != nil {
		return nil, fmt.Errorf("decoding %s/%s/%s: %w", kind, tenant, name, err)
	}
	b.entries.fill(key, ticket, e)
	return e, nil
}

// invalidateEntry drops a cached entry that another node changed.
func (b *backend) invalidateEntry(key string) {
	if strings.HasPrefix(key, secretsStoragePrefix) {
		b.entries.drop(key)
	}
}

// signerCache keeps parsed DKIM private keys of one mount, by the SHA-256 of
// their PEM, so a warm sign parses no key. A key's PEM never changes, so an
// entry is never stale; whether a version may still sign is decided on the
// entry, before its key is looked up here.
type signerCache struct {
	mu      sync.Mutex
	signers *lru[crypto.Signer]
	// parses counts keys parsed (cache misses), for tests.
	parses atomic.Int64
}

func newSignerCache() *signerCache {
	return &signerCache{signers: newLRU[crypto.Signer](maxSigners)}
}

// signer returns the parsed key of pemText.
func (c *signerCache) signer(pemText string) (crypto.Signer, error) {
	sum := sha256.Sum256([]byte(pemText))
	key := string(sum[:])
	c.mu.Lock()
	s, ok := c.signers.get(key)
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	c.parses.Add(1)
	s, err := dkimkey.ParsePrivateKey(pemText)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.signers.put(key, s)
	c.mu.Unlock()
	return s, nil
}

func (c *signerCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.signers.clear()
}
