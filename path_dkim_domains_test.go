package penguinmails

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
)

// restart is a new backend over the same storage, as after Vault restarts.
func (env *testEnv) restart() *testEnv {
	env.t.Helper()
	next := *env
	conf := logical.TestBackendConfig()
	conf.StorageView = env.storage
	conf.System = env.system
	next.b = newBackend(env.clock.Now)
	if err := next.b.Setup(context.Background(), conf); err != nil {
		env.t.Fatal(err)
	}
	env.t.Cleanup(func() { next.b.Clean(context.Background()) })
	return &next
}

// claimOf reads a domain's claim straight from storage.
func (env *testEnv) claimOf(domain string) *domainClaim {
	env.t.Helper()
	c, err := loadClaim(context.Background(), env.storage, domain)
	if err != nil {
		env.t.Fatal(err)
	}
	return c
}

func TestDKIMDomains_SecondTenantIs409NamingTheOwner(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.com", map[string]interface{}{"key_type": "ed25519"})
	before := env.storageSnapshot()
	msg := env.refused(logical.UpdateOperation, "dkim/tenant-2/example.com", map[string]interface{}{"key_type": "ed25519"}, 409)
	if !strings.Contains(msg, "dkim/tenant-1/example.com") || !strings.Contains(msg, "dkim-domains/example.com/transfer") {
		t.Fatalf("second tenant's create: %q", msg)
	}
	if after := env.storageSnapshot(); !reflect.DeepEqual(before, after) {
		t.Fatal("the refused create changed storage")
	}
	got := env.ok(logical.ReadOperation, "dkim-domains/example.com", nil)
	if got["owner"] != "tenant-1" || got["owner_path"] != "dkim/tenant-1/example.com" || got["conflict"] != false {
		t.Fatalf("dkim-domains read: %v", got)
	}
	if keys := env.ok(logical.ListOperation, "dkim-domains/", nil)["keys"]; !reflect.DeepEqual(keys, []string{"example.com"}) {
		t.Fatalf("dkim-domains list: %v", keys)
	}
	// The owner's writes go on; a delete releases the domain.
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.com", map[string]interface{}{"selector": "mail2"})
	env.ok(logical.DeleteOperation, "dkim/tenant-1/example.com", nil)
	if c := env.claimOf("example.com"); c != nil {
		t.Fatalf("claim after delete: %+v", c)
	}
	env.ok(logical.UpdateOperation, "dkim/tenant-2/example.com", map[string]interface{}{"key_type": "ed25519"})
	if c := env.claimOf("example.com"); c == nil || c.Tenant != "tenant-2" {
		t.Fatalf("claim after the second tenant's create: %+v", c)
	}
	msg = env.badRequest(logical.ReadOperation, "dkim-domains/EXAMPLE.com", nil)
	if !strings.Contains(msg, "use dkim-domains/example.com") {
		t.Fatalf("non-canonical admin path: %q", msg)
	}
}

func TestDKIMDomains_TransferMovesTheKeyWithItsHistory(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.com", map[string]interface{}{"key_type": "ed25519"})
	_, key := env.storedDKIMVersion("tenant-1", "example.com", 1)
	got := env.ok(logical.UpdateOperation, "dkim-domains/example.com/transfer", map[string]interface{}{"tenant": "tenant-2"})
	if got["owner"] != "tenant-2" {
		t.Fatalf("transfer answered %v", got)
	}
	env.assertTransferred(key.PrivateKey)
	hist := env.ok(logical.ReadOperation, "dkim/tenant-2/example.com/history", nil)["history"].([]interface{})
	if h := hist[0].(map[string]interface{}); h["operation"] != "transfer" || !strings.Contains(h["reason"].(string), "tenant-1") {
		t.Fatalf("history %v", h)
	}
	records := env.publishedTXT("dkim/tenant-2/example.com")
	if err := dkimcheck.Verify(records, env.signVia("dkim/tenant-2/example.com", testMessage, nil)); err != nil {
		t.Fatal(err)
	}
	env.refused(logical.UpdateOperation, "dkim/tenant-1/example.com", nil, 409)
	// A retry changes nothing.
	before := env.storageSnapshot()
	env.ok(logical.UpdateOperation, "dkim-domains/example.com/transfer", map[string]interface{}{"tenant": "tenant-2"})
	if after := env.storageSnapshot(); !reflect.DeepEqual(before, after) {
		t.Fatal("a transfer to the owner changed storage")
	}
	env.refused(logical.UpdateOperation, "dkim-domains/absent.example/transfer", map[string]interface{}{"tenant": "tenant-2"}, 404)
}

// assertTransferred checks the end state of a transfer of example.com from
// tenant-1 to tenant-2: one owner, one secret, the same private key.
func (env *testEnv) assertTransferred(privateKey string) {
	env.t.Helper()
	if c := env.claimOf("example.com"); c == nil || c.Tenant != "tenant-2" || c.TransferTo != "" || c.TransferFrom != "" {
		env.t.Fatalf("claim %+v, want tenant-2 and no transfer left", c)
	}
	if e, _ := loadSecret(context.Background(), env.storage, "dkim", "tenant-1", "example.com"); e != nil {
		env.t.Fatal("the old tenant still has the secret")
	}
	if _, m := env.storedDKIMVersion("tenant-2", "example.com", 1); m.PrivateKey != privateKey {
		env.t.Fatal("the transferred secret does not hold the original key")
	}
	// The index follows the move: the new path is indexed, the old is not.
	env.wantIndexed("dkim", "tenant-2", "example.com")
	if stale := env.indexKeysOfSecret("dkim", "tenant-1", "example.com"); len(stale) != 0 {
		env.t.Fatalf("index keys of the old path left after the transfer: %v", stale)
	}
}

// crashingStorage lets budget writes (Put or Delete) through, then fails
// every one, as storage does when Vault dies in the middle of a request.
type crashingStorage struct {
	logical.Storage
	mu     sync.Mutex
	budget int
}

var errCrashed = errors.New("storage gone (simulated crash)")

func (s *crashingStorage) spend() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.budget == 0 {
		return errCrashed
	}
	s.budget--
	return nil
}

func (s *crashingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if err := s.spend(); err != nil {
		return err
	}
	return s.Storage.Put(ctx, e)
}

func (s *crashingStorage) Delete(ctx context.Context, key string) error {
	if err := s.spend(); err != nil {
		return err
	}
	return s.Storage.Delete(ctx, key)
}

// A transfer cut after any of its storage writes leaves one owner and the
// key in storage; a fresh backend's next call on the domain completes it.
func TestDKIMDomains_TransferSurvivesACrashAfterEveryWrite(t *testing.T) {
	// claim; the copy with its index keys (due key, work key, entry, then
	// the old tenant's due and work keys dropped); claim; delete; claim. The
	// day marker is known to the backend already.
	const writes = 9
	for budget := 0; budget <= writes; budget++ {
		for _, next := range []string{"transfer again", "old tenant writes", "new tenant writes"} {
			env := newImmediateDKIMEnv(t)
			env.ok(logical.UpdateOperation, "dkim/tenant-1/example.com", map[string]interface{}{"key_type": "ed25519"})
			_, key := env.storedDKIMVersion("tenant-1", "example.com", 1)
			req := &logical.Request{Operation: logical.UpdateOperation, Path: "dkim-domains/example.com/transfer",
				Data: map[string]interface{}{"tenant": "tenant-2"}, Storage: &crashingStorage{Storage: env.storage, budget: budget}}
			_, err := env.b.HandleRequest(context.Background(), req)
			if (err == nil) != (budget == writes) {
				t.Fatalf("budget %d: transfer error %v", budget, err)
			}

			env = env.restart()
			c := env.claimOf("example.com")
			held := 0
			for _, tenant := range []string{"tenant-1", "tenant-2"} {
				if e, _ := loadSecret(context.Background(), env.storage, "dkim", tenant, "example.com"); e != nil {
					held++
					if _, m := env.storedDKIMVersion(tenant, "example.com", 1); m.PrivateKey != key.PrivateKey {
						t.Fatalf("budget %d: %s holds another key", budget, tenant)
					}
				}
			}
			if c == nil || held == 0 {
				t.Fatalf("budget %d: claim %+v, %d copies of the key", budget, c, held)
			}

			switch next {
			case "transfer again":
				if budget < writes {
					env.ok(logical.UpdateOperation, "dkim-domains/example.com/transfer", map[string]interface{}{"tenant": "tenant-2"})
				}
				env.assertTransferred(key.PrivateKey)
			default:
				// Each tenant's write first settles the domain; exactly one
				// tenant is then the owner, and keeps the original key.
				writer := "tenant-1"
				if next == "new tenant writes" {
					writer = "tenant-2"
				}
				resp, err := env.do(logical.UpdateOperation, "dkim/"+writer+"/example.com", nil)
				accepted := err == nil && (resp == nil || !resp.IsError())
				owner := env.claimOf("example.com")
				if owner == nil || accepted != (owner.Tenant == writer) {
					t.Fatalf("budget %d, %s: accepted %v (%v %v) with claim %+v", budget, next, accepted, resp, err, owner)
				}
				nonOwner := map[string]string{"tenant-1": "tenant-2", "tenant-2": "tenant-1"}[owner.Tenant]
				env.refused(logical.UpdateOperation, "dkim/"+nonOwner+"/example.com", nil, 409)
				if _, m := env.storedDKIMVersion(owner.Tenant, "example.com", 1); m.PrivateKey != key.PrivateKey {
					t.Fatalf("budget %d: the owner's key changed", budget)
				}
			}
		}
	}
}

// dropClaim makes a domain's secrets look written before claims existed,
// as after an upgrade: no claim, and the backfill not yet run.
func (env *testEnv) dropClaim(domain string) {
	env.t.Helper()
	for _, key := range []string{claimKey(domain), dkimClaimsCompleteKey} {
		if err := env.storage.Delete(context.Background(), key); err != nil {
			env.t.Fatal(err)
		}
	}
}

// copySecret stores from's secret again for tenant to, as the old code let
// a second tenant create one.
func (env *testEnv) copySecret(from, to, domain string) {
	env.t.Helper()
	raw, err := env.storage.Get(context.Background(), secretStorageKey("dkim", from, domain))
	if err != nil || raw == nil {
		env.t.Fatalf("reading %s: %v", from, err)
	}
	raw.Key = secretStorageKey("dkim", to, domain)
	if err := env.storage.Put(context.Background(), raw); err != nil {
		env.t.Fatal(err)
	}
}

func TestDKIMDomains_SecretsFromBeforeClaimsAreClaimedByTheBackfill(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.com", map[string]interface{}{"key_type": "ed25519"})
	env.dropClaim("example.com")

	// Another tenant's create finds the old secret and claims for it.
	msg := env.refused(logical.UpdateOperation, "dkim/tenant-2/example.com", nil, 409)
	if !strings.Contains(msg, "dkim/tenant-1/example.com") {
		t.Fatalf("create next to an unclaimed secret: %q", msg)
	}
	if c := env.claimOf("example.com"); c == nil || c.Tenant != "tenant-1" {
		t.Fatalf("claim %+v", c)
	}
	// The owner's own next write claims too.
	env.dropClaim("example.com")
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.com", nil)
	if c := env.claimOf("example.com"); c == nil || c.Tenant != "tenant-1" {
		t.Fatalf("claim after the owner's write %+v", c)
	}
}

func TestDKIMDomains_AConflictingPairFromBeforeIsShownNotResolved(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.com", map[string]interface{}{"key_type": "ed25519"})
	env.copySecret("tenant-1", "tenant-2", "example.com")
	env.dropClaim("example.com")
	env.refused(logical.UpdateOperation, "dkim/tenant-1/example.com", nil, 409) // runs the backfill
	before := env.storageSnapshot()
	for _, tenant := range []string{"tenant-1", "tenant-2"} {
		// PATCH writes too: a new key by patch is refused like one by write.
		for _, op := range []logical.Operation{logical.UpdateOperation, logical.PatchOperation} {
			msg := env.refused(op, "dkim/"+tenant+"/example.com", map[string]interface{}{"key_type": "rsa-2048"}, 409)
			if !strings.Contains(msg, "dkim/tenant-1/example.com and dkim/tenant-2/example.com") {
				t.Fatalf("%s by %s: %q", op, tenant, msg)
			}
		}
	}
	if after := env.storageSnapshot(); !reflect.DeepEqual(before, after) {
		t.Fatal("a write picked an owner")
	}
	got := env.ok(logical.ReadOperation, "dkim-domains/example.com", nil)
	if got["conflict"] != true || !reflect.DeepEqual(got["holders"], []string{"dkim/tenant-1/example.com", "dkim/tenant-2/example.com"}) || got["owner"] != "" {
		t.Fatalf("dkim-domains read: %v", got)
	}
	env.refused(logical.UpdateOperation, "dkim-domains/example.com/transfer", map[string]interface{}{"tenant": "tenant-3"}, 409)
	// The operator deletes one; the other is then claimed on its next write.
	// The copy names tenant-1 inside: the delete removes what its path
	// names, and leaves tenant-1's entry and index keys alone.
	env.ok(logical.DeleteOperation, "dkim/tenant-2/example.com", nil)
	if e, _ := loadSecret(context.Background(), env.storage, "dkim", "tenant-2", "example.com"); e != nil {
		t.Fatal("the deleted copy is still stored")
	}
	if e, _ := loadSecret(context.Background(), env.storage, "dkim", "tenant-1", "example.com"); e == nil {
		t.Fatal("deleting tenant-2's copy deleted tenant-1's secret")
	}
	env.wantIndexed("dkim", "tenant-1", "example.com")
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.com", nil)
	if c := env.claimOf("example.com"); c == nil || c.Tenant != "tenant-1" {
		t.Fatalf("claim %+v", c)
	}
}

func TestDKIMDomains_ReleaseOnlyAStaleClaim(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "dkim/tenant-1/example.com", map[string]interface{}{"key_type": "ed25519"})
	msg := env.refused(logical.DeleteOperation, "dkim-domains/example.com", nil, 409)
	if !strings.Contains(msg, "dkim/tenant-1/example.com") {
		t.Fatalf("release of a live claim: %q", msg)
	}
	// A claim whose secret is gone (a create that failed to save, say).
	if err := saveClaim(context.Background(), env.storage, "stale.example", &domainClaim{Tenant: "tenant-9"}); err != nil {
		t.Fatal(err)
	}
	env.ok(logical.DeleteOperation, "dkim-domains/stale.example", nil)
	if c := env.claimOf("stale.example"); c != nil {
		t.Fatalf("stale claim kept: %+v", c)
	}
	// Another tenant's create repairs a stale claim by itself.
	if err := saveClaim(context.Background(), env.storage, "stale.example", &domainClaim{Tenant: "tenant-9"}); err != nil {
		t.Fatal(err)
	}
	env.ok(logical.UpdateOperation, "dkim/tenant-2/stale.example", map[string]interface{}{"key_type": "ed25519"})
	if c := env.claimOf("stale.example"); c == nil || c.Tenant != "tenant-2" {
		t.Fatalf("claim %+v", c)
	}
}

// Creates racing for one domain from many tenants: one wins, the rest get
// a 409, and only the winner's secret is stored.
func TestDKIMDomains_ConcurrentCreatesLeaveOneOwner(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	const tenants = 8
	codes := make([]int, tenants)
	var wg sync.WaitGroup
	for i := 0; i < tenants; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := env.do(logical.UpdateOperation, "dkim/tenant-"+string(rune('a'+i))+"/race.example", map[string]interface{}{"key_type": "ed25519"})
			codes[i] = statusOf(logical.UpdateOperation, resp, err)
		}(i)
	}
	wg.Wait()
	won := 0
	for _, c := range codes {
		switch c {
		case 200:
			won++
		case 409:
		default:
			t.Fatalf("status %d among %v", c, codes)
		}
	}
	var holders []string
	err := walkSecretNames(context.Background(), env.storage, "dkim", "", func(tenant, domain string) error {
		if domain == "race.example" {
			holders = append(holders, tenant)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if won != 1 || len(holders) != 1 || env.claimOf("race.example").Tenant != holders[0] {
		t.Fatalf("%d creates won, holders %v, claim %+v", won, holders, env.claimOf("race.example"))
	}
}

// listCounting counts the List calls made through it.
type listCounting struct {
	logical.Storage
	lists int
}

func (s *listCounting) List(ctx context.Context, prefix string) ([]string, error) {
	s.lists++
	return s.Storage.List(ctx, prefix)
}

// Once every old secret is claimed, admitting a new domain reads its claim
// and the backfill marker: it lists no tenant folder, however many tenants
// the mount has (before, it read one entry per tenant on every create).
func TestDKIMDomains_NewDomainAfterTheBackfillListsNothing(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	for _, tenant := range []string{"tenant-1", "tenant-2", "tenant-3"} {
		env.ok(logical.UpdateOperation, "dkim/"+tenant+"/"+tenant+".example", map[string]interface{}{"key_type": "ed25519"})
	}
	counting := &listCounting{Storage: env.storage}
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "dkim/tenant-4/new.example",
		Storage: counting, Data: map[string]interface{}{"key_type": "ed25519"}}
	if resp, err := env.b.HandleRequest(context.Background(), req); err != nil || resp.IsError() {
		t.Fatalf("create: %v %v", resp, err)
	}
	if counting.lists != 0 {
		t.Fatalf("creating a new domain listed storage %d times", counting.lists)
	}
	if c := env.claimOf("new.example"); c == nil || c.Tenant != "tenant-4" {
		t.Fatalf("claim %+v", c)
	}
}
