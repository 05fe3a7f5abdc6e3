package penguinmails

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailgun/mailgunfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/sendgrid/sendgridfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses/sesfake"
)

// The fault-injection matrix of API key rotations: the real drivers against
// the fake provider servers, with a fault at every call the engine makes
// (create, test, delete), a timeout, a lost answer, a storage failure and a
// crash between any two steps. Every case ends with faultsSettled: one
// current version, no pending one, no WAL, the provider accepting exactly
// the keys Vault serves, and a history that says what happened; and no key
// secret in an error, a history row or the logs.

// faultsFake is what the matrix needs of a fake provider server.
type faultsFake interface {
	URL() string
	Close()
	Fail(op string, status, n int)
	RateLimit(op string, retryAfterSecs, n int)
	Hang(op string, n int)
	Release()
	Live() []string
	Requests(op string) []providertest.Request
}

// faultsProvider is one row of the matrix.
type faultsProvider struct {
	name string
	// attempts is how many calls the driver makes for one operation that
	// keeps failing: the AWS SDK retries a server error or a throttle once.
	attempts int
	// testOp is the fake's operation of the driver's Test call.
	testOp string
	// rejectStatus is the status with which the provider refuses a key.
	rejectStatus int
	// start starts the fake with a seeded key and returns the write data of
	// the secret that holds it.
	start func() (faultsFake, provider.Key, map[string]interface{})
	// echo makes the fake's error answers quote secret, as a careless
	// provider might.
	echo func(f faultsFake, secret string)
	// isCreate recognises the create call in a request to the provider.
	isCreate func(r *http.Request, body []byte) bool
}

var faultsProviders = []faultsProvider{
	{
		name: "sendgrid", attempts: 1, testOp: "test", rejectStatus: http.StatusUnauthorized,
		start: func() (faultsFake, provider.Key, map[string]interface{}) {
			scopes := []string{"api_keys.create", "api_keys.delete", "api_keys.read", "mail.send"}
			f, k := faultsSendGridSeed(scopes)
			return f, k, map[string]interface{}{"api_key": k.Secret, "api_key_id": k.ID,
				"scopes": strings.Join(scopes, ","), "key_name": k.Name}
		},
		echo: func(f faultsFake, _ string) { f.(*sendgridfake.Server).EchoSecrets(true) },
		isCreate: func(r *http.Request, _ []byte) bool {
			return r.Method == http.MethodPost && r.URL.Path == "/v3/api_keys"
		},
	},
	{
		name: "mailgun", attempts: 1, testOp: "domains", rejectStatus: http.StatusUnauthorized,
		start: func() (faultsFake, provider.Key, map[string]interface{}) {
			f := mailgunfake.New()
			k := f.AddKey("admin", "penguinmails mail", "")
			return f, k, map[string]interface{}{"api_key": k.Secret, "key_id": k.ID, "role": "admin", "key_name": k.Name}
		},
		echo: func(f faultsFake, _ string) { f.(*mailgunfake.Server).EchoSecrets(true) },
		isCreate: func(r *http.Request, _ []byte) bool {
			return r.Method == http.MethodPost && r.URL.Path == "/v1/keys"
		},
	},
	{
		name: "ses", attempts: 2, testOp: "test", rejectStatus: http.StatusForbidden,
		start: func() (faultsFake, provider.Key, map[string]interface{}) {
			f := sesfake.New()
			k := f.AddKey("ses-sender")
			return f, k, map[string]interface{}{"access_key_id": k.ID, "secret_access_key": k.Secret,
				"iam_user": k.User, "region": "us-east-1"}
		},
		echo: func(f faultsFake, secret string) { f.(*sesfake.Server).SetErrorMessage("bad key " + secret) },
		isCreate: func(_ *http.Request, body []byte) bool {
			return bytes.Contains(body, []byte("Action=CreateAccessKey"))
		},
	},
}

// faultsSendGridSeed starts a SendGrid fake with one key whose id the
// write path accepts. SendGrid ids are base64url and may begin with "-" or
// "_", which checkAPIKey (keyAttrRe) refuses on write: a gap of the write
// validation, not of rotation, so the matrix seeds around it.
func faultsSendGridSeed(scopes []string) (*sendgridfake.Server, provider.Key) {
	for {
		f := sendgridfake.New()
		k := f.AddKey("penguinmails mail", scopes...)
		if keyAttrRe.MatchString(k.ID) {
			return f, k
		}
		f.Close()
	}
}

// faultsFixture is one secret api-keys/t1/{provider} on a fake provider.
type faultsFixture struct {
	t    *testing.T
	env  *engEnv
	p    faultsProvider
	fake faultsFake
	path string

	mu sync.Mutex
	// keyOf maps a key id to its secret, for every key Vault held; seen is
	// every secret the provider ever accepted during the test.
	keyOf   map[string]string
	seen    map[string]bool
	crashAt string
}

// newFaultsFixture writes the secret (with extra fields) over the fake.
func newFaultsFixture(t *testing.T, p faultsProvider, extra map[string]interface{}) *faultsFixture {
	t.Helper()
	return newFaultsFixtureVia(t, p, extra, nil)
}

// newFaultsFixtureVia is newFaultsFixture with the driver routed to the
// base URL via returns for the fake (a proxy in front of it); nil: the
// fake itself.
func newFaultsFixtureVia(t *testing.T, p faultsProvider, extra map[string]interface{}, via func(faultsFake) string) *faultsFixture {
	t.Helper()
	fake, seed, data := p.start()
	t.Cleanup(fake.Close)
	fx := &faultsFixture{t: t, env: newEngEnv(t), p: p, fake: fake, path: "api-keys/t1/" + p.name,
		keyOf: map[string]string{seed.ID: seed.Secret}, seen: map[string]bool{seed.Secret: true}}
	data["base_url"] = fake.URL()
	if via != nil {
		data["base_url"] = via(fake)
	}
	for k, v := range extra {
		data[k] = v
	}
	fx.env.ok(logical.CreateOperation, fx.path, data)
	fx.watch(fx.env.b)
	return fx
}

// watch installs b's step hook: it notes the keys the provider accepts
// after every step (so that a key made and deleted again is still checked
// for leaks), and crashes at crashAt.
func (fx *faultsFixture) watch(b *backend) {
	b.testCrashAfter = func(step string) error {
		fx.snapshot()
		fx.mu.Lock()
		defer fx.mu.Unlock()
		if step == fx.crashAt {
			return errCrash
		}
		return nil
	}
}

func (fx *faultsFixture) snapshot() []string {
	live := fx.fake.Live()
	fx.mu.Lock()
	defer fx.mu.Unlock()
	for _, s := range live {
		fx.seen[s] = true
	}
	return live
}

func (fx *faultsFixture) rotate() (int, string) {
	fx.t.Helper()
	return fx.env.status(logical.UpdateOperation, fx.path+"/rotate", nil)
}

func (fx *faultsFixture) entry() *secretEntry {
	fx.t.Helper()
	return fx.env.entry("api-keys", "t1", fx.p.name)
}

// faultsWant is how a case must end: the current version and the newest
// history row.
type faultsWant struct {
	current               int
	op, result, step, why string
}

var (
	faultsSuccess = faultsWant{current: 2, op: "rotate", result: "success"}
	faultsUndone  = faultsWant{current: 1, op: "rotate", result: "failed", step: stepUndo, why: "undone by Vault's rollback"}
)

func faultsFailedAt(step string) faultsWant {
	return faultsWant{current: 1, op: "rotate", result: "failed", step: step}
}

// faultsSettled asserts the invariant every case ends with, and that no
// secret leaked.
func (fx *faultsFixture) faultsSettled(b *backend, want faultsWant) *secretEntry {
	fx.t.Helper()
	t := fx.t
	e := fx.entry()
	k := b.kinds["api-keys"]
	var current []int
	var serve []string
	for i := range e.Versions {
		v := &e.Versions[i]
		st := k.stageOf(v)
		if st == stagePending {
			t.Errorf("version %d is still pending", v.Version)
		}
		if st != stageCurrent && st != stagePrevious {
			continue
		}
		if st == stageCurrent {
			current = append(current, v.Version)
		}
		var m apiKeyMaterial
		if err := decodeMaterial(v, &m); err != nil {
			t.Fatalf("version %d: %v", v.Version, err)
		}
		fx.mu.Lock()
		fx.keyOf[m.Key.ID], fx.seen[m.Key.Secret] = m.Key.Secret, true
		fx.mu.Unlock()
		serve = append(serve, m.Key.Secret)
	}
	if len(current) != 1 || current[0] != want.current || e.CurrentVersion != want.current {
		t.Errorf("current versions %v (current_version %d), want exactly %d", current, e.CurrentVersion, want.current)
	}
	if w := fx.env.wals(); len(w) != 0 {
		t.Errorf("WAL entries left: %v", w)
	}
	serve = append(serve, fx.owedSecrets(e)...)
	sort.Strings(serve)
	if live := fx.snapshot(); !slices.Equal(live, serve) {
		t.Errorf("the provider accepts %d keys %s, Vault serves %d %s", len(live), fx.names(live), len(serve), fx.names(serve))
	}
	fx.checkNewestRow(e, want)
	fx.noLeak()
	return e
}

// owedSecrets are the secrets of the keys queued for removal: still valid
// at the provider until the worker deletes them.
func (fx *faultsFixture) owedSecrets(e *secretEntry) []string {
	var out []string
	for _, r := range e.Removals {
		var m apiKeyMaterial
		if err := decodeMaterial(&secretVersion{Version: r.Version, Material: r.Material}, &m); err != nil {
			fx.t.Fatalf("pending removal %d: %v", r.Version, err)
		}
		fx.mu.Lock()
		s, ok := fx.keyOf[m.Key.ID]
		fx.mu.Unlock()
		if !ok {
			fx.t.Errorf("pending removal of version %d names key %q, which Vault never held", r.Version, m.Key.ID)
		}
		out = append(out, s)
	}
	return out
}

// names shows keys by a short prefix of their secret, not the secret.
func (fx *faultsFixture) names(secrets []string) string {
	var out []string
	for _, s := range secrets {
		out = append(out, fmt.Sprintf("%.6s…", s))
	}
	return "[" + strings.Join(out, " ") + "]"
}

func (fx *faultsFixture) checkNewestRow(e *secretEntry, want faultsWant) {
	fx.t.Helper()
	if len(e.History) == 0 {
		fx.t.Errorf("no history, want a %s %s row", want.op, want.result)
		return
	}
	row := e.History[len(e.History)-1]
	if row.Operation != want.op || row.Result != want.result || row.Step != want.step || !strings.Contains(row.Reason, want.why) {
		fx.t.Errorf("newest history row %s/%s step %q reason %q, want %s/%s step %q reason ~%q",
			row.Operation, row.Result, row.Step, row.Reason, want.op, want.result, want.step, want.why)
	}
	if want.result == "failed" && row.Error == "" {
		fx.t.Errorf("failed history row without its error")
	}
}

// noLeak asserts that no secret the provider ever accepted appears in the
// given messages, the history, the stored errors or the logs.
func (fx *faultsFixture) noLeak(msgs ...string) {
	fx.t.Helper()
	e := fx.entry()
	texts := map[string]string{"logs": fx.env.logs.String(), "last_rotation_error": e.LastRotationError}
	for i, m := range msgs {
		texts[fmt.Sprintf("message %d", i)] = m
	}
	for i, h := range e.History {
		texts[fmt.Sprintf("history row %d", i)] = h.Error + " " + h.Reason
	}
	for _, r := range e.Removals {
		texts[fmt.Sprintf("pending removal %d", r.Version)] = r.LastError
	}
	fx.mu.Lock()
	defer fx.mu.Unlock()
	for s := range fx.seen {
		for where, text := range texts {
			if s != "" && strings.Contains(text, s) {
				fx.t.Errorf("a key secret (%.6s…) appears in %s", s, where)
			}
		}
	}
}

// wantStatus asserts a refused rotation's status and message parts.
func (fx *faultsFixture) wantStatus(code int, msg string, want int, parts ...string) {
	fx.t.Helper()
	if code != want {
		fx.t.Fatalf("rotate: %d %q, want %d", code, msg, want)
	}
	for _, p := range parts {
		if !strings.Contains(msg, p) {
			fx.t.Errorf("rotate: %q does not say %q", msg, p)
		}
	}
}

func TestAPIKeyFaults(t *testing.T) {
	cases := []struct {
		name string
		run  func(t *testing.T, p faultsProvider)
	}{
		{"create_500", faultsCreate500},
		{"create_timeout", faultsCreateTimeout},
		{"create_answer_lost", faultsCreateAnswerLost},
		{"test_500", faultsTest500},
		{"test_rejects_key", faultsTestRejects},
		{"delete_500_at_overlap_end", faultsDelete500},
		{"delete_429_at_overlap_end", faultsDelete429},
		{"storage_fails_after_create", faultsStorageAfterCreate},
		{"crash", faultsCrash},
		{"create_429", faultsCreate429},
	}
	for _, p := range faultsProviders {
		t.Run(p.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) { c.run(t, p) })
			}
		})
	}
}

// A provider error at create: 502 naming the set step, nothing made at the
// provider, the current key unchanged.
func faultsCreate500(t *testing.T, p faultsProvider) {
	fx := newFaultsFixture(t, p, nil)
	p.echo(fx.fake, fx.env.ok(logical.ReadOperation, fx.path, nil)[secretFieldOf(p)].(string))
	fx.fake.Fail("create", http.StatusInternalServerError, p.attempts)
	code, msg := fx.rotate()
	fx.wantStatus(code, msg, 502, "at the set step", "HTTP 500", "current version is unchanged")
	if n := len(fx.fake.Requests("create")); n != p.attempts {
		t.Errorf("%d create calls, want %d", n, p.attempts)
	}
	fx.faultsSettled(fx.env.b, faultsFailedAt(stepSet))
	fx.noLeak(msg)
}

func secretFieldOf(p faultsProvider) string { return keyServiceNamed(p.name).secretField }

// A create that never answers: 504 after the step timeout, the pending
// version and its WAL stay, and Vault's rollback settles it once the
// provider is back.
func faultsCreateTimeout(t *testing.T, p faultsProvider) {
	shortenStepTimeout(t, 500*time.Millisecond)
	fx := newFaultsFixture(t, p, nil)
	fx.fake.Hang("create", 1)
	code, msg := fx.rotate()
	fx.wantStatus(code, msg, 504, "set step", "timed out")
	fx.wantInFlight()
	fx.fake.Release()
	if err := fx.env.rollback(fx.env.b); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	fx.faultsSettled(fx.env.b, faultsUndone)
	fx.noLeak(msg)
}

// wantInFlight asserts what a timed-out or crashed rotation leaves for the
// rollback: its WAL and a pending version whose key id was never recorded.
func (fx *faultsFixture) wantInFlight() {
	fx.t.Helper()
	if w := fx.env.wals(); len(w) != 1 {
		fx.t.Fatalf("WAL entries: %v, want the rotation's", w)
	}
	p := fx.entry().pending()
	if p == nil {
		fx.t.Fatal("no pending version left for the rollback")
	}
	var m apiKeyMaterial
	if err := decodeMaterial(p, &m); err != nil || m.Key.ID != "" || p.Set {
		fx.t.Fatalf("pending version %d: id %q set %v (%v), want no id recorded", p.Version, m.Key.ID, p.Set, err)
	}
}

// A create the provider carried out but whose answer never came back: the
// key exists at the provider, Vault has no id for it, and the rollback
// finds it by name and deletes it.
func faultsCreateAnswerLost(t *testing.T, p faultsProvider) {
	shortenStepTimeout(t, 500*time.Millisecond)
	var proxy *faultsProxy
	fx := newFaultsFixtureVia(t, p, nil, func(f faultsFake) string {
		proxy = newFaultsProxy(t, f.URL(), p.isCreate)
		return proxy.srv.URL
	})
	proxy.dropCreates(1)

	code, msg := fx.rotate()
	fx.wantStatus(code, msg, 504, "set step")
	fx.unrecordedKeyUndone(msg, "the one whose answer was lost")
}

// unrecordedKeyUndone checks what a rotation leaves when the provider made
// the new key but Vault never recorded its id: the WAL, a pending version
// without an id, and the key live at the provider (what it is, for the
// message). A restarted backend's rollback finds it by name and deletes
// it.
func (fx *faultsFixture) unrecordedKeyUndone(msg, what string) {
	fx.t.Helper()
	fx.wantInFlight()
	if live := fx.snapshot(); len(live) != 2 {
		fx.t.Fatalf("the provider holds %d keys, want the current one and %s", len(live), what)
	}
	fx.rollbackOnRestart(faultsUndone)
	fx.noLeak(msg)
}

// rollbackOnRestart runs Vault's rollback on a restarted backend and
// checks that it settles the rotation as want says.
func (fx *faultsFixture) rollbackOnRestart(want faultsWant) {
	fx.t.Helper()
	b2 := fx.env.fresh()
	fx.watch(b2)
	if err := fx.env.rollback(b2); err != nil {
		fx.t.Fatalf("rollback: %v", err)
	}
	fx.faultsSettled(b2, want)
}

// faultsProxy stands between the driver and a fake provider, and can drop
// the answer of a create the provider carried out (the connection stays
// silent until the client gives up), as a network failure does.
type faultsProxy struct {
	srv      *httptest.Server
	upstream string
	isCreate func(*http.Request, []byte) bool
	mu       sync.Mutex
	drops    int
}

func newFaultsProxy(t *testing.T, upstream string, isCreate func(*http.Request, []byte) bool) *faultsProxy {
	p := &faultsProxy{upstream: upstream, isCreate: isCreate}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *faultsProxy) dropCreates(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.drops = n
}

func (p *faultsProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	drop := p.drops > 0 && p.isCreate(r, body)
	if drop {
		p.drops--
	}
	p.mu.Unlock()
	ctx := r.Context()
	if drop {
		ctx = context.WithoutCancel(ctx) // the provider finishes the call
	}
	resp, err := p.forward(ctx, r, body)
	if err != nil {
		http.Error(w, "proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	if drop {
		<-r.Context().Done()
		return
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(answer)
}

// forward sends r to the upstream fake with the Host the client signed
// (SigV4 signs it).
func (p *faultsProxy) forward(ctx context.Context, r *http.Request, body []byte) (*http.Response, error) {
	out, err := http.NewRequestWithContext(ctx, r.Method, p.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host
	return http.DefaultClient.Do(out)
}

// A provider error when testing the new key: 502 at the test step, the new
// key deleted at the provider (undo), the current key unchanged.
func faultsTest500(t *testing.T, p faultsProvider) {
	fx := newFaultsFixture(t, p, nil)
	fx.fake.Fail(p.testOp, http.StatusInternalServerError, p.attempts)
	code, msg := fx.rotate()
	fx.wantStatus(code, msg, 502, "at the test step", "HTTP 500")
	fx.wantUndone(1)
	fx.faultsSettled(fx.env.b, faultsFailedAt(stepTest))
	fx.noLeak(msg)
}

// wantUndone asserts that the provider made n keys and Vault deleted each.
func (fx *faultsFixture) wantUndone(n int) {
	fx.t.Helper()
	if c, d := len(fx.fake.Requests("create")), len(fx.fake.Requests("delete")); c != n || d != n {
		fx.t.Errorf("%d create and %d delete calls, want %d of each", c, d, n)
	}
}

// The provider refuses the new key when tested: the rotation is undone.
func faultsTestRejects(t *testing.T, p faultsProvider) {
	fx := newFaultsFixture(t, p, nil)
	p.echo(fx.fake, fx.env.ok(logical.ReadOperation, fx.path, nil)[secretFieldOf(p)].(string))
	fx.fake.Fail(p.testOp, p.rejectStatus, 1)
	code, msg := fx.rotate()
	fx.wantStatus(code, msg, 502, "at the test step", fmt.Sprintf("HTTP %d", p.rejectStatus))
	fx.wantUndone(1)
	fx.faultsSettled(fx.env.b, faultsFailedAt(stepTest))
	fx.noLeak(msg)
}

// A provider error at the delete that ends the previous key's overlap: the
// removal stays queued (pending_removals with its error, status failing)
// and succeeds after its backoff; the provider accepts exactly what Vault
// serves at every stage.
func faultsDelete500(t *testing.T, p faultsProvider) {
	fx := newFaultsFixture(t, p, nil)
	fx.env.ok(logical.UpdateOperation, fx.path+"/rotate", nil)
	e := fx.faultsSettled(fx.env.b, faultsSuccess)
	if len(fx.fake.Live()) != 2 {
		t.Fatalf("during the overlap the provider accepts %d keys, want both", len(fx.fake.Live()))
	}

	fx.fake.Fail("delete", http.StatusInternalServerError, p.attempts)
	fx.env.clock.Advance(day + time.Minute)
	fx.env.tick(fx.env.b)
	e = fx.faultsSettled(fx.env.b, faultsWant{current: 2, op: "remove", result: "failed"})
	rows := fx.env.ok(logical.ReadOperation, fx.path, nil)["pending_removals"].([]interface{})
	if len(rows) != 1 {
		t.Fatalf("pending_removals: %v, want version 1", rows)
	}
	r := rows[0].(map[string]interface{})
	if r["version"] != 1 || r["attempts"] != 1 || !strings.Contains(fmt.Sprint(r["last_error"]), "HTTP 500") {
		t.Errorf("pending removal: %v", r)
	}
	failing := statusRows(fx.env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"status": "failing"}))
	if len(failing) != 1 || failing[0]["path"] != fx.path {
		t.Errorf("rotation/status failing: %v, want %s", failing, fx.path)
	}

	// Not before the backoff; then the delete goes through.
	deletes := len(fx.fake.Requests("delete"))
	fx.env.clock.Advance(retryBase / 2)
	fx.env.tick(fx.env.b)
	if n := len(fx.fake.Requests("delete")); n != deletes {
		t.Errorf("the removal was retried before its backoff (%d delete calls, want %d)", n, deletes)
	}
	fx.env.clock.Advance(retryBase)
	fx.env.tick(fx.env.b)
	e = fx.faultsSettled(fx.env.b, faultsWant{current: 2, op: "remove", result: "success"})
	if len(e.Removals) != 0 || len(fx.fake.Live()) != 1 {
		t.Errorf("after the retry: %d removals queued, %d keys live, want 0 and 1", len(e.Removals), len(fx.fake.Live()))
	}
	failing = statusRows(fx.env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"status": "failing"}))
	if len(failing) != 0 {
		t.Errorf("still failing after the removal: %v", failing)
	}
}

// Storage fails right after the provider made the key (the write that
// would record its id): the key is at the provider and Vault's pending
// version has no id. A restarted backend's rollback finds it by name and
// deletes it.
func faultsStorageAfterCreate(t *testing.T, p faultsProvider) {
	fx := newFaultsFixture(t, p, nil)
	key := secretsStoragePrefix + fx.path
	puts := 0
	fx.env.s.setFailPut(func(k string) error {
		if k != key {
			return nil
		}
		if puts++; puts == 2 { // the first stores the pending version, the second its id
			return errors.New("storage unavailable")
		}
		return nil
	})
	code, msg := fx.rotate()
	fx.env.s.setFailPut(nil)
	if code < 500 || !strings.Contains(msg, "storage unavailable") {
		t.Fatalf("rotate: %d %q, want the storage error", code, msg)
	}
	fx.unrecordedKeyUndone(msg, "the one Vault failed to record")
}

// The process dies after each step; a restarted backend's rollback
// settles the rotation: undone after create (no key was made), finished
// after set and test when the key passes its test again, undone (key
// deleted) when it does not, finished after finish.
func faultsCrash(t *testing.T, p faultsProvider) {
	cases := []struct {
		after     string
		testFails bool
		want      faultsWant
	}{
		{stepCreate, false, faultsUndone},
		{stepSet, false, faultsFinishedByRollback},
		{stepSet, true, faultsUndone},
		{stepTest, false, faultsFinishedByRollback},
		{stepTest, true, faultsUndone},
		{stepFinish, false, faultsSuccess},
	}
	for _, c := range cases {
		name := "after_" + c.after
		if c.testFails {
			name += "/test_fails_on_rollback"
		}
		t.Run(name, func(t *testing.T) {
			fx := newFaultsFixture(t, p, nil)
			fx.crashAt = c.after
			if _, err := fx.env.do(fx.env.b, logical.UpdateOperation, fx.path+"/rotate", nil); !errors.Is(err, errCrash) {
				t.Fatalf("rotate: %v, want the simulated crash", err)
			}
			fx.env.b.clean(context.Background())
			fx.crashAt = ""
			if w := fx.env.wals(); len(w) != 1 {
				t.Fatalf("WAL entries after the crash: %v", w)
			}
			if c.testFails {
				fx.fake.Fail(p.testOp, p.rejectStatus, 1)
			}
			fx.rollbackOnRestart(c.want)
			made := 1
			if c.after == stepCreate {
				made = 0
			}
			if n := len(fx.fake.Requests("create")); n != made {
				t.Errorf("%d keys made, want %d", n, made)
			}
			if c.want.current == 1 && len(fx.fake.Requests("delete")) != made {
				t.Errorf("%d delete calls, want %d (the undone key)", len(fx.fake.Requests("delete")), made)
			}
		})
	}
}

var faultsFinishedByRollback = faultsWant{current: 2, op: "rotate", result: "success", why: "finished by Vault's rollback"}

// A rate limit at create: 502 carrying the provider's Retry-After, and the
// next automatic attempt waits at least that long.
func faultsCreate429(t *testing.T, p faultsProvider) {
	const retryAfter = 5 * time.Minute // longer than the first backoff (retryBase)
	fx := newFaultsFixture(t, p, map[string]interface{}{"auto_rotate": true})
	fx.env.tick(fx.env.b)
	fx.env.clock.Advance(apiKeyPolicy.RotationPeriod + time.Minute) // due
	fx.fake.RateLimit("create", int(retryAfter/time.Second), p.attempts)
	code, msg := fx.rotate()
	fx.wantStatus(code, msg, 502, "at the set step", "HTTP 429", "retry after "+retryAfter.String())
	e := fx.faultsSettled(fx.env.b, faultsFailedAt(stepSet))
	failedAt := fx.env.clock.Now()
	if e.NextAttempt.Before(failedAt.Add(retryAfter)) {
		t.Errorf("next_attempt %s is before the provider's Retry-After (%s after %s)",
			formatTime(e.NextAttempt), retryAfter, formatTime(failedAt))
	}
	creates := len(fx.fake.Requests("create"))
	fx.env.clock.Advance(retryAfter - time.Second)
	fx.env.tick(fx.env.b)
	if n := len(fx.fake.Requests("create")); n != creates {
		t.Errorf("the worker called create %d times before the Retry-After had passed", n-creates)
	}
	fx.env.clock.Advance(2 * time.Second)
	fx.env.tick(fx.env.b)
	// Version 2 was the rate-limited attempt's, dropped: numbers are never
	// reused.
	waitFor(t, "the automatic rotation", func() bool { return fx.entry().CurrentVersion == 3 && len(fx.env.wals()) == 0 })
	fx.faultsSettled(fx.env.b, faultsWant{current: 3, op: "rotate", result: "success"})
	fx.noLeak(msg)
}

// A rate limit at the delete that ends the previous key's overlap: the
// removal is not retried before the provider's Retry-After.
func faultsDelete429(t *testing.T, p faultsProvider) {
	const retryAfter = 10 * time.Minute
	fx := newFaultsFixture(t, p, nil)
	fx.env.ok(logical.UpdateOperation, fx.path+"/rotate", nil)
	fx.fake.RateLimit("delete", int(retryAfter/time.Second), p.attempts)
	fx.env.clock.Advance(day + time.Minute)
	fx.env.tick(fx.env.b)
	e := fx.faultsSettled(fx.env.b, faultsWant{current: 2, op: "remove", result: "failed"})
	if len(e.Removals) != 1 || !strings.Contains(e.Removals[0].LastError, "retry after "+retryAfter.String()) {
		t.Fatalf("pending removals %+v, want version 1 with the provider's Retry-After", e.Removals)
	}
	if next := e.Removals[0].NextAttempt; next.Before(fx.env.clock.Now().Add(retryAfter)) {
		t.Errorf("removal retried at %s, before the provider's Retry-After of %s", formatTime(next), retryAfter)
	}
	deletes := len(fx.fake.Requests("delete"))
	fx.env.clock.Advance(retryAfter - time.Second)
	fx.env.tick(fx.env.b)
	if n := len(fx.fake.Requests("delete")); n != deletes {
		t.Errorf("the worker called delete %d times before the Retry-After had passed", n-deletes)
	}
	fx.env.clock.Advance(2 * time.Second)
	fx.env.tick(fx.env.b)
	fx.faultsSettled(fx.env.b, faultsWant{current: 2, op: "remove", result: "success"})
	if live := fx.fake.Live(); len(live) != 1 {
		t.Errorf("%d keys live after the removal, want 1", len(live))
	}
}
