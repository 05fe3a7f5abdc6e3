package penguinmails

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// testClock is a clock the tests move by hand.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// testEnv is one mounted backend with in-memory storage, a movable clock and a
// captured log.
type testEnv struct {
	t       *testing.T
	b       *backend
	storage *logical.InmemStorage
	clock   *testClock
	system  *logical.StaticSystemView
	logs    *syncBuffer
	events  *eventLog
	// baseline are keys the test's setup wrote (its config); storedKeys
	// leaves them out.
	baseline map[string]bool
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newTestEnv(t *testing.T) *testEnv {
	t.Helper()
	env := &testEnv{
		t:       t,
		storage: &logical.InmemStorage{},
		clock:   &testClock{now: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)},
		logs:    &syncBuffer{},
	}
	conf := logical.TestBackendConfig()
	conf.StorageView = env.storage
	env.system = logical.TestSystemView()
	conf.System = env.system
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: env.logs, Level: hclog.Trace})
	env.events = &eventLog{}
	conf.EventsSender = env.events
	env.b = newBackend(env.clock.Now)
	if err := env.b.Setup(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	// A job or a tick may have started the mount's worker goroutine; stop
	// it as Vault does on unmount, so that no test's worker outlives it.
	t.Cleanup(func() { env.b.Clean(context.Background()) })
	return env
}

// do runs one request as Vault would route it, including the existence check
// that turns a write into create or update.
func (env *testEnv) do(op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	env.t.Helper()
	req := &logical.Request{
		Operation:   op,
		Path:        path,
		Data:        data,
		Storage:     env.storage,
		DisplayName: "token-tester",
		EntityID:    "entity-1234",
	}
	if op == logical.UpdateOperation || op == logical.CreateOperation {
		checkFound, exists, err := env.b.HandleExistenceCheck(context.Background(), req)
		if err != nil {
			// Vault answers a failed existence check's field validation
			// with a 400 carrying the message.
			var ue errutil.UserError
			if errors.As(err, &ue) {
				return logical.ErrorResponse(ue.Err), nil
			}
			return nil, err
		}
		if checkFound {
			if exists {
				req.Operation = logical.UpdateOperation
			} else {
				req.Operation = logical.CreateOperation
			}
		}
	}
	return env.b.HandleRequest(context.Background(), req)
}

// ok runs a request that must succeed and returns its data.
func (env *testEnv) ok(op logical.Operation, path string, data map[string]interface{}) map[string]interface{} {
	env.t.Helper()
	resp, err := env.do(op, path, data)
	if err != nil {
		env.t.Fatalf("%s %s: %v", op, path, err)
	}
	if resp != nil && resp.IsError() {
		env.t.Fatalf("%s %s: %v", op, path, resp.Error())
	}
	if resp == nil {
		return nil
	}
	return resp.Data
}

// badRequest runs a request that must be refused as bad input (HTTP 400) and
// returns the message.
func (env *testEnv) badRequest(op logical.Operation, path string, data map[string]interface{}) string {
	env.t.Helper()
	resp, err := env.do(op, path, data)
	if err != nil {
		env.t.Fatalf("%s %s: want a 400 response, got error %v", op, path, err)
	}
	if resp == nil || !resp.IsError() {
		env.t.Fatalf("%s %s: want a 400 response, got %#v", op, path, resp)
	}
	if code := statusOf(op, resp, err); code != 400 {
		env.t.Fatalf("%s %s: want status 400, got %d", op, path, code)
	}
	return resp.Error().Error()
}

// statusOf is the HTTP status Vault would answer for a handler's result:
// coded errors keep their code, the rest follow logical.RespondErrorCommon.
func statusOf(op logical.Operation, resp *logical.Response, err error) int {
	var coded logical.HTTPCodedError
	if errors.As(err, &coded) {
		return coded.Code()
	}
	code, _ := logical.RespondErrorCommon(&logical.Request{Operation: op}, resp, err)
	if code == 0 {
		return 200
	}
	return code
}

// storedKeys lists every key in storage, recursively, except the marker
// of the one-time DKIM claims backfill: mount bookkeeping that the first
// DKIM write sets whatever its input, not something a request stored.
func (env *testEnv) storedKeys() []string {
	env.t.Helper()
	var out []string
	var walk func(prefix string)
	walk = func(prefix string) {
		keys, err := env.storage.List(context.Background(), prefix)
		if err != nil {
			env.t.Fatal(err)
		}
		for _, k := range keys {
			if strings.HasSuffix(k, "/") {
				walk(prefix + k)
			} else if prefix+k != dkimClaimsCompleteKey && !env.baseline[prefix+k] {
				out = append(out, prefix+k)
			}
		}
	}
	walk("")
	return out
}

// splitIndexKeys parts stored keys into those of the due index (index/...)
// and the rest.
func splitIndexKeys(keys []string) (index, rest []string) {
	for _, k := range keys {
		if strings.HasPrefix(k, "index/") {
			index = append(index, k)
		} else {
			rest = append(rest, k)
		}
	}
	return index, rest
}

// indexKeysOfSecret lists the stored due and work index keys that name the
// secret, sorted.
func (env *testEnv) indexKeysOfSecret(kind, tenant, name string) []string {
	env.t.Helper()
	index, _ := splitIndexKeys(env.storedKeys())
	var out []string
	for _, k := range index {
		if (strings.HasPrefix(k, indexDuePrefix) || strings.HasPrefix(k, indexWorkPrefix)) &&
			strings.HasSuffix(k, ":"+secretID(kind, tenant, name)) {
			out = append(out, k)
		}
	}
	return out
}

// wantIndexed checks that the secret has exactly the due and work index
// keys its entry records (no stale ones), and a day marker for its due key.
func (env *testEnv) wantIndexed(kind, tenant, name string) {
	env.t.Helper()
	e := env.storedEntry(kind, tenant, name)
	if e.Indexed.Due == "" || e.Indexed.Work == "" {
		env.t.Fatalf("%s/%s/%s records index keys %+v, want a due and a work key", kind, tenant, name, e.Indexed)
	}
	want := []string{e.Indexed.Due, e.Indexed.Work} // index/due sorts before index/work
	if got := env.indexKeysOfSecret(kind, tenant, name); strings.Join(got, " ") != strings.Join(want, " ") {
		env.t.Fatalf("%s/%s/%s: stored index keys %v, want %v", kind, tenant, name, got, want)
	}
	day := strings.SplitN(strings.TrimPrefix(e.Indexed.Due, indexDuePrefix), "/", 2)[0]
	if raw, err := env.storage.Get(context.Background(), indexDaysPrefix+day); err != nil || raw == nil {
		env.t.Fatalf("no day marker %s for %s: %v", indexDaysPrefix+day, e.Indexed.Due, err)
	}
}

// tick runs the periodic function as Vault's rollback manager would.
func (env *testEnv) tick() {
	env.t.Helper()
	req := &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}
	if _, err := env.b.HandleRequest(context.Background(), req); err != nil {
		env.t.Fatalf("periodic: %v", err)
	}
}

// runJob drives background work until the job with this id has finished
// and returns it as rotate/jobs/{id} shows it. The worker goroutine the job
// started may run passes too; taking workMu first waits out a pass it has
// in flight, so every round completes at least one pass, and the bound
// counts passes, not time.
func (env *testEnv) runJob(id string) map[string]interface{} {
	env.t.Helper()
	const maxPasses = 100
	for i := 0; i < maxPasses; i++ {
		env.b.workMu.Lock()
		env.b.workMu.Unlock() //nolint:staticcheck // an empty critical section: wait for the pass in flight
		env.tick()
		job := env.ok(logical.ReadOperation, "rotate/jobs/"+id, nil)
		if st := job["state"]; st == jobSucceeded || st == jobFailed {
			return job
		}
	}
	env.t.Fatalf("job %s not finished after %d background passes: %v", id, maxPasses,
		env.ok(logical.ReadOperation, "rotate/jobs/"+id, nil))
	return nil
}

// startJob starts a rotation job at path (rotate/bulk or
// rotate-tenant/{tenant}), checks that it answered at once with the job
// still planning, and returns its id.
func (env *testEnv) startJob(path string, data map[string]interface{}) string {
	env.t.Helper()
	got := env.ok(logical.UpdateOperation, path, data)
	id, _ := got["job_id"].(string)
	if id == "" || got["state"] != jobPlanning {
		env.t.Fatalf("%s answered %v, want a job_id in state %s", path, got, jobPlanning)
	}
	return id
}

// wantJobCounts checks a finished job's state and counts.
func (env *testEnv) wantJobCounts(job map[string]interface{}, total, rotated, failed int) {
	env.t.Helper()
	want := jobSucceeded
	if failed > 0 {
		want = jobFailed
	}
	if job["state"] != want || job["total"] != total || job["rotated"] != rotated || job["failed"] != failed {
		env.t.Fatalf("job: state %v total %v rotated %v failed %v, want %s %d %d %d (errors %v)",
			job["state"], job["total"], job["rotated"], job["failed"], want, total, rotated, failed, job["errors"])
	}
}

func TestFactory_ServesHelp(t *testing.T) {
	conf := logical.TestBackendConfig()
	conf.StorageView = &logical.InmemStorage{}
	conf.System.(*logical.StaticSystemView).PluginEnvironment = &logical.PluginEnvironment{VaultVersion: "1.21.0"}
	b, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := b.HandleRequest(context.Background(), &logical.Request{Operation: logical.HelpOperation, Path: "", Storage: conf.StorageView})
	if err != nil {
		t.Fatal(err)
	}
	if help, _ := resp.Data["help"].(string); !strings.Contains(help, "{type}/{tenant}/{name}") {
		t.Fatalf("root help does not describe the layout: %q", help)
	}
}

func TestPathsSpecial_SealWrapsSecretMaterial(t *testing.T) {
	env := newTestEnv(t)
	wrapped := env.b.SpecialPaths().SealWrapStorage
	for _, want := range []string{secretsStoragePrefix, configStoragePath, providersStoragePrefix} {
		found := false
		for _, w := range wrapped {
			found = found || w == want
		}
		if !found {
			t.Errorf("storage prefix %q is not seal-wrapped (have %v)", want, wrapped)
		}
	}
}

// sealWrapped applies Vault's rule for SealWrapStorage: exact match, or a
// prefix when the entry ends with "/".
func sealWrapped(rules []string, key string) bool {
	for _, r := range rules {
		if key == r || (strings.HasSuffix(r, "/") && strings.HasPrefix(key, r)) {
			return true
		}
	}
	return false
}

// Every stored key that holds a credential, the provider credentials
// included, falls under a seal-wrap rule as Vault matches them.
func TestPathsSpecial_EveryCredentialKeyIsSealWrapped(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"max_versions": 3})
	env.ok(logical.UpdateOperation, "config/providers/sg", map[string]interface{}{"provider": "sendgrid", "api_key": "SG.admin"})
	env.ok(logical.CreateOperation, "smtp/t1/m1", map[string]interface{}{"username": "a@example.com", "host": "smtp.example.com"})
	for _, key := range env.storedKeys() {
		if strings.HasPrefix(key, "index/") || strings.HasPrefix(key, "jobs") || strings.HasPrefix(key, "job-") {
			continue // names and times, no credential
		}
		if !sealWrapped(env.b.SpecialPaths().SealWrapStorage, key) {
			t.Errorf("stored key %q is not seal-wrapped", key)
		}
	}
}

func TestWritePaths_ForwardToActiveNode(t *testing.T) {
	env := newTestEnv(t)
	// Update operations that write nothing are served where they arrive;
	// each one's test shows that it leaves storage unchanged.
	writesNothing := map[string]bool{
		pathMalformed(env.b).Pattern: true, // answers 400/404
		dkimSignPattern:              true, // TestDKIM_SignWritesNothing
	}
	for _, p := range env.b.Paths {
		for op, h := range p.Operations {
			if op == logical.ReadOperation || op == logical.ListOperation || op == logical.HelpOperation {
				continue
			}
			if writesNothing[p.Pattern] {
				continue
			}
			props := h.Properties()
			if !props.ForwardPerformanceStandby || !props.ForwardPerformanceSecondary {
				t.Errorf("%s %s writes but does not set both forwarding flags", op, p.Pattern)
			}
		}
	}
}

func TestPaths_HaveHelpAndOpenAPIAttributes(t *testing.T) {
	env := newTestEnv(t)
	for _, p := range env.b.Paths {
		if p.Pattern == pathMalformed(env.b).Pattern {
			continue // unpublished catch-all
		}
		if p.HelpSynopsis == "" {
			t.Errorf("%s has no help synopsis", p.Pattern)
		}
		if p.DisplayAttrs == nil || p.DisplayAttrs.OperationPrefix != operationPrefix {
			t.Errorf("%s has no OpenAPI operation prefix", p.Pattern)
		}
		for op, h := range p.Operations {
			if h.Properties().Summary == "" {
				t.Errorf("%s %s has no summary", op, p.Pattern)
			}
		}
	}
}

// Every sub-path of a secret answers a missing secret the same way: a 404
// whose message names the secret, never an empty 200 or a bare 404.
func TestSubPathsOfMissingSecretAre404NamingIt(t *testing.T) {
	env := newTestEnv(t)
	for _, p := range []string{
		"smtp/tenant-1/absent/history",
		sshPath + "/history",
		sshPath + "/authorized_keys",
		dkimPath + "/history",
		dkimPath + "/dns",
	} {
		resp, err := env.do(logical.ReadOperation, p, nil)
		if code := statusOf(logical.ReadOperation, resp, err); code != 404 {
			t.Fatalf("read %s: status %d, want 404", p, code)
		}
		secret := strings.TrimSuffix(p, p[strings.LastIndex(p, "/"):])
		if err == nil || !strings.Contains(err.Error(), secret) {
			t.Fatalf("read %s: error %v does not name %s", p, err, secret)
		}
	}
}
