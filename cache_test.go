package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

const fakeKey = "secrets/fake/t1/n1"

// readVersion reads fake/t1/n1 through b and returns its version.
func (env *engEnv) readVersion(b *backend) interface{} {
	env.t.Helper()
	resp, err := env.do(b, logical.ReadOperation, "fake/t1/n1", nil)
	if err != nil || resp == nil || resp.IsError() {
		env.t.Fatalf("read fake/t1/n1: %v %v", err, resp)
	}
	return resp.Data["version"]
}

// A read right after a write, a rotation or a delete on this node shows it.
func TestEntryCache_ReadsAfterWritesAreNeverStale(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "n1", nil)
	if v := env.readVersion(env.b); v != 1 {
		t.Fatalf("read after create: version %v", v)
	}
	env.ok(logical.UpdateOperation, "fake/t1/n1/rotate", map[string]interface{}{"reason": "test"})
	if v := env.readVersion(env.b); v != 2 {
		t.Fatalf("read after rotate: version %v, want 2", v)
	}
	env.ok(logical.UpdateOperation, "fake/t1/n1", map[string]interface{}{"max_uses": 5}) // a settings write
	if got := env.ok(logical.ReadOperation, "fake/t1/n1", nil)["max_uses"]; got != 5 {
		t.Fatalf("read after a settings write: max_uses %v, want 5", got)
	}
	env.ok(logical.DeleteOperation, "fake/t1/n1", nil)
	if resp, err := env.do(env.b, logical.ReadOperation, "fake/t1/n1", nil); err != nil || resp != nil {
		t.Fatalf("read after delete: %v %v, want nothing (404)", resp, err)
	}
	if code, _ := env.status(logical.ReadOperation, "fake/t1/n1/history", nil); code != 404 {
		t.Fatalf("history after delete: status %d, want 404", code)
	}
	if n := env.b.entries.len(); n != 0 {
		t.Fatalf("%d entries cached after the delete", n)
	}
}

// Warm reads cost no storage Get; a cold backend reads storage once.
func TestEntryCache_ServesReadsWithoutStorage(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "n1", nil)
	env.s.resetCounts()
	for range 3 {
		env.readVersion(env.b)
	}
	if n := env.s.getsUnder(secretsStoragePrefix); n != 0 {
		t.Fatalf("3 reads after the write made %d storage Gets of secrets, want 0", n)
	}
	cold := env.fresh()
	for range 3 {
		env.readVersion(cold)
	}
	if n := env.s.getsUnder(fakeKey); n != 1 {
		t.Fatalf("3 reads on a cold backend made %d Gets, want 1", n)
	}
}

// Whatever a caller does to an entry it loaded, the next load returns what
// storage holds. Appends to the logs must not write into a shared array.
func TestEntryCache_LoadedEntryIsTheCallersOwn(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "n1", nil)
	for range 3 {
		env.ok(logical.UpdateOperation, "fake/t1/n1/rotate", map[string]interface{}{"reason": "test"})
	}
	ctx := context.Background()
	load := func() *secretEntry {
		e, err := env.b.loadEntry(ctx, env.s, "fake", "t1", "n1")
		if err != nil || e == nil {
			t.Fatalf("load: %v", err)
		}
		return e
	}
	env.b.entries.mu.Lock()
	cached, _ := env.b.entries.entries.get(fakeKey)
	env.b.entries.mu.Unlock()
	if cap(cached.History) == len(cached.History) {
		// Decoding leaves room at the end, which a shallow copy would share.
		t.Logf("cached history has no spare capacity (len %d); the append check below is weaker", len(cached.History))
	}

	a := load()
	a.History = append(a.History, historyEntry{Operation: "from-a"})
	b := load()
	b.History = append(b.History, historyEntry{Operation: "from-b"})
	if got := a.History[len(a.History)-1].Operation; got != "from-a" {
		t.Fatalf("a's appended row reads %q: two loads share an array", got)
	}
	a.Versions[0].Status = statusRevoked
	a.Versions = append(a.Versions, secretVersion{Version: 99})
	a.Versions[1].Material = json.RawMessage(`"changed"`)
	a.Access = append(a.Access, historyEntry{Operation: "download"})
	a.Removals = append(a.Removals, removal{Version: 1})
	a.Settings = json.RawMessage(`{"x":1}`)
	a.CurrentVersion, a.Uses = 42, 7
	if _, err := a.derive(env.b.kinds["fake"], defaultConfig(), env.clock.Now().Add(400*day)); err != nil {
		t.Fatal(err)
	}

	stored := env.entry("fake", "t1", "n1")
	if again := load(); !reflect.DeepEqual(again, stored) {
		t.Fatalf("load after mutations differs from storage:\n got  %+v\n want %+v", again, stored)
	}
}

// clone must copy every slice, map or pointer of secretEntry, or share it
// knowingly. A field added to the entry fails here until clone handles it.
func TestEntryClone_CopiesEveryReference(t *testing.T) {
	handled := map[string]bool{
		"secretEntry.Versions": true, "secretEntry.Removals": true, "secretEntry.History": true, "secretEntry.Access": true,
		// json.RawMessage replaced whole, never written into (see clone).
		"secretEntry.Settings": true, "secretVersion.Material": true, "removal.Material": true,
	}
	var walk func(tp reflect.Type)
	seen := map[reflect.Type]bool{}
	walk = func(tp reflect.Type) {
		if seen[tp] {
			return
		}
		seen[tp] = true
		for i := range tp.NumField() {
			f := tp.Field(i)
			name := tp.Name() + "." + f.Name
			ft := f.Type
			switch ft.Kind() {
			case reflect.Slice, reflect.Map, reflect.Pointer, reflect.Interface, reflect.Chan, reflect.Func:
				if !handled[name] {
					t.Errorf("%s (%s) is a reference clone does not copy: update secretEntry.clone and this list", name, ft)
				}
				if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
					walk(ft.Elem())
				}
			case reflect.Struct:
				if ft.PkgPath() != "time" {
					walk(ft)
				}
			}
		}
	}
	walk(reflect.TypeOf(secretEntry{}))
}

// A standby's backend caches an entry; the active node writes a new
// version. Without the invalidation Vault sends, the standby would serve
// the old version from its cache (it does cache: no Get); with it, the
// next read shows the new one.
func TestEntryCache_InvalidateDropsWhatAnotherNodeChanged(t *testing.T) {
	env := newEngEnv(t)
	active, standby := env.b, env.fresh()
	env.writeFake("t1", "n1", nil)
	if v := env.readVersion(standby); v != 1 {
		t.Fatalf("standby read: version %v", v)
	}
	env.ok(logical.UpdateOperation, "fake/t1/n1/rotate", map[string]interface{}{"reason": "test"})
	if v := env.readVersion(active); v != 2 {
		t.Fatalf("active read after rotate: version %v", v)
	}
	env.s.resetCounts()
	if v := env.readVersion(standby); v != 1 {
		t.Fatalf("standby without invalidation read version %v: expected its cached version 1 (the cache does not cache?)", v)
	}
	if n := env.s.getsUnder(fakeKey); n != 0 {
		t.Fatalf("a cached read made %d Gets", n)
	}
	standby.Invalidate(context.Background(), fakeKey)
	if v := env.readVersion(standby); v != 2 {
		t.Fatalf("standby after Invalidate read version %v, want 2", v)
	}
	// A delete on the active node, invalidated: the standby finds nothing.
	env.ok(logical.DeleteOperation, "fake/t1/n1", nil)
	standby.Invalidate(context.Background(), fakeKey)
	if resp, err := env.do(standby, logical.ReadOperation, "fake/t1/n1", nil); err != nil || resp != nil {
		t.Fatalf("standby read after delete: %v %v", resp, err)
	}
}

// A read that fetched the old entry before a write must not cache it after.
func TestEntryCache_FillRacingAWriteIsNotKept(t *testing.T) {
	c := newEntryCache(10)
	_, ticket := c.lookup(fakeKey)
	c.replace(fakeKey, &secretEntry{CurrentVersion: 2}) // the write lands
	c.fill(fakeKey, ticket, &secretEntry{CurrentVersion: 1})
	if e, _ := c.lookup(fakeKey); e == nil || e.CurrentVersion != 2 {
		t.Fatalf("after a racing fill the cache holds %+v, want version 2", e)
	}
	_, ticket = c.lookup("secrets/fake/t1/other")
	c.drop("secrets/fake/t1/other") // an invalidation lands
	c.fill("secrets/fake/t1/other", ticket, &secretEntry{CurrentVersion: 1})
	if e, _ := c.lookup("secrets/fake/t1/other"); e != nil {
		t.Fatal("a fill racing an invalidation was kept")
	}
}

// cache_size bounds the entries; the least recently used goes first.
func TestEntryCache_EvictsLeastRecentlyUsed(t *testing.T) {
	env := newEngEnv(t)
	if code, msg := env.status(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": maxCacheSize + 1}); code != 400 {
		t.Fatalf("cache_size above the bound: %d %q", code, msg)
	}
	if code, _ := env.status(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": -1}); code != 400 {
		t.Fatalf("negative cache_size: %d", code)
	}
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": 2})
	if got := env.ok(logical.ReadOperation, "config", nil)["cache_size"]; got != 2 {
		t.Fatalf("config reads cache_size %v", got)
	}
	for _, n := range []string{"a", "b", "c"} {
		env.writeFake("t1", n, nil) // each write caches its entry
	}
	if n := env.b.entries.len(); n != 2 {
		t.Fatalf("%d entries cached, want 2", n)
	}
	read := func(name string) int {
		before := env.s.getsUnder("secrets/fake/t1/" + name)
		env.ok(logical.ReadOperation, "fake/t1/"+name, nil)
		return env.s.getsUnder("secrets/fake/t1/"+name) - before
	}
	if read("c") != 0 || read("b") != 0 {
		t.Fatal("the two newest entries are not cached")
	}
	if read("a") != 1 { // evicted; reading it evicts c, the least recently used
		t.Fatal("the oldest entry was not evicted")
	}
	if read("b") != 0 || read("a") != 0 || read("c") != 1 {
		t.Fatal("reading a did not evict c, the least recently used")
	}
}

func TestEntryCache_SizeZeroDisablesAndCleanEmpties(t *testing.T) {
	env := newEngEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": 0})
	env.writeFake("t1", "n1", nil)
	env.s.resetCounts()
	for range 3 {
		env.readVersion(env.b)
	}
	if n := env.s.getsUnder(fakeKey); n != 3 || env.b.entries.len() != 0 {
		t.Fatalf("cache_size 0: %d Gets for 3 reads, %d cached; want 3 and 0", n, env.b.entries.len())
	}
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": 5})
	env.readVersion(env.b)
	if env.b.entries.len() != 1 {
		t.Fatal("a read after turning the cache on did not cache")
	}
	env.b.Clean(context.Background())
	if env.b.entries.len() != 0 {
		t.Fatal("Clean left entries cached")
	}
	// A config changed on another node reaches the cache bound too.
	other := env.fresh()
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"cache_size": 0})
	other.Invalidate(context.Background(), configStoragePath)
	env.readVersion(other)
	if other.entries.len() != 0 {
		t.Fatal("cache_size 0 written on another node did not turn this node's cache off")
	}
}

// Readers never see a version go back while a writer rotates: a stale fill
// would show as an older version after a newer one.
func TestEntryCache_ConcurrentReadersAndWriters(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "n1", nil)
	const rotations = 20
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	stop := make(chan struct{})
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := env.do(env.b, logical.ReadOperation, "fake/t1/n1", nil)
				if err != nil || resp == nil || resp.IsError() {
					errs <- fmt.Errorf("reader %d: %v %v", r, err, resp)
					return
				}
				v := resp.Data["version"].(int)
				if v < last {
					errs <- fmt.Errorf("reader %d saw version %d after %d", r, v, last)
					return
				}
				last = v
			}
		}()
	}
	// Another node's reads race with invalidations too.
	other := env.fresh()
	for i := range rotations {
		env.ok(logical.UpdateOperation, "fake/t1/n1/rotate", map[string]interface{}{"reason": "test"})
		if i%2 == 0 {
			env.readVersion(other)
		}
		other.Invalidate(context.Background(), fakeKey)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if v := env.readVersion(env.b); v != rotations+1 {
		t.Fatalf("final read: version %v, want %d", v, rotations+1)
	}
	if v := env.readVersion(other); v != rotations+1 {
		t.Fatalf("final read on the other node: version %v, want %d", v, rotations+1)
	}
}
