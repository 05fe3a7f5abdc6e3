package penguinmails

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/errutil"
	"github.com/hashicorp/vault/sdk/logical"
)

// Tests of the rotation engine (engine.go) through a recording double of an
// outside system: a secret type "fake" whose set, test and undo hooks stand
// for a mail server or a provider API. The double records every call and
// can be told to fail, hang or panic at any step.

// fakeCall is one call the engine made into the double.
type fakeCall struct {
	step    string
	path    string
	version int
}

// fakeOutside is the outside system of the fake type. live holds the
// credentials valid there (by secret path and version): set adds one, undo
// and endOverlap remove it.
type fakeOutside struct {
	mu     sync.Mutex
	calls  []fakeCall
	fail   map[string]error
	hang   map[string]bool
	panics map[string]bool
	live   map[string]map[int]bool
	made   int
	// inflight and maxInflight count calls running at once.
	inflight, maxInflight int
}

func newFakeOutside() *fakeOutside {
	return &fakeOutside{fail: map[string]error{}, hang: map[string]bool{}, panics: map[string]bool{}, live: map[string]map[int]bool{}}
}

// failAt makes step fail with err until cleared (nil err clears it).
func (o *fakeOutside) failAt(step string, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil {
		delete(o.fail, step)
		return
	}
	o.fail[step] = err
}

func (o *fakeOutside) hangAt(step string, on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.hang[step] = on
}

func (o *fakeOutside) panicAt(step string, on bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.panics[step] = on
}

// call records one call and acts as told for its step. change runs when
// the call succeeds, or before a hang (the outside system received it).
func (o *fakeOutside) call(ctx context.Context, step, path string, version int, change func()) error {
	o.mu.Lock()
	o.calls = append(o.calls, fakeCall{step, path, version})
	fail, hang, panics := o.fail[step], o.hang[step], o.panics[step]
	o.inflight++
	o.maxInflight = max(o.maxInflight, o.inflight)
	o.mu.Unlock()
	defer func() {
		o.mu.Lock()
		o.inflight--
		o.mu.Unlock()
	}()
	if panics {
		panic("fake outside system panicked at " + step)
	}
	if hang {
		o.apply(change)
		<-ctx.Done()
		return ctx.Err()
	}
	if fail != nil {
		return fail
	}
	o.apply(change)
	return nil
}

func (o *fakeOutside) apply(change func()) {
	if change == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	change()
}

// callsOf lists the recorded calls of one step for one secret.
func (o *fakeOutside) callsOf(step, path string) []fakeCall {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []fakeCall
	for _, c := range o.calls {
		if c.step == step && c.path == path {
			out = append(out, c)
		}
	}
	return out
}

// steps lists the steps called for one secret, in order.
func (o *fakeOutside) steps(path string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, c := range o.calls {
		if c.path == path {
			out = append(out, fmt.Sprintf("%s:%d", c.step, c.version))
		}
	}
	return out
}

// liveVersions lists the versions valid in the outside system.
func (o *fakeOutside) liveVersions(path string) []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []int
	for v := range o.live[path] {
		out = append(out, v)
	}
	sort.Ints(out)
	return out
}

type fakeMaterial struct {
	Value string `json:"value"`
}

func entryPath(e *secretEntry) string { return e.Kind + "/" + e.Tenant + "/" + e.Name }

// fakeKind is a staged secret type with an overlap (previous versions stay
// valid for a day), served by the double o.
func fakeKind(o *fakeOutside) *secretKind {
	return &secretKind{
		Name:        "fake",
		Title:       "fake credential",
		defaults:    typePolicy{RotationPeriod: 30 * day, AlertThreshold: 7 * day, GracePeriod: day, RiskLevel: "low"},
		paths:       pathFake,
		graceStatus: statusGrace,
		afterGrace:  statusExpired,
		create: func(ctx context.Context, _ *backend, e *secretEntry, _ *engineConfig, _ time.Time, _ map[string]interface{}) (interface{}, error) {
			var m fakeMaterial
			err := o.call(ctx, stepCreate, entryPath(e), 0, func() { o.made++; m.Value = fmt.Sprintf("made-%d", o.made) })
			return m, err
		},
		set: func(ctx context.Context, _ *backend, e *secretEntry, p *secretVersion) error {
			path, n := entryPath(e), p.Version
			return o.call(ctx, stepSet, path, n, func() {
				if o.live[path] == nil {
					o.live[path] = map[int]bool{}
				}
				o.live[path][n] = true
			})
		},
		test: func(ctx context.Context, _ *backend, e *secretEntry, p *secretVersion) error {
			return o.call(ctx, stepTest, entryPath(e), p.Version, nil)
		},
		undo: func(ctx context.Context, _ *backend, e *secretEntry, p *secretVersion) error {
			path, n := entryPath(e), p.Version
			return o.call(ctx, stepUndo, path, n, func() { delete(o.live[path], n) })
		},
		endOverlap: func(ctx context.Context, _ *backend, e *secretEntry, v *secretVersion) error {
			path, n := entryPath(e), v.Version
			return o.call(ctx, "end_overlap", path, n, func() { delete(o.live[path], n) })
		},
	}
}

func pathFake(b *backend, k *secretKind) []*framework.Path {
	fields := map[string]*framework.FieldSchema{"value": {Type: framework.TypeString, Description: "The credential."}}
	write := func(_ context.Context, _ *backend, req *logical.Request, d *framework.FieldData, e *secretEntry, cfg *engineConfig, now time.Time) error {
		if e.current() != nil {
			return nil // settings only
		}
		e.LastRotated = now
		return e.addVersion(fakeMaterial{Value: d.Get("value").(string)}, actorOf(req), now, k, cfg)
	}
	view := func(_ *secretEntry, v *secretVersion, withSecrets bool) (map[string]interface{}, error) {
		var m fakeMaterial
		if err := decodeMaterial(v, &m); err != nil {
			return nil, err
		}
		if !withSecrets {
			return map[string]interface{}{}, nil
		}
		return map[string]interface{}{"value": m.Value}, nil
	}
	return []*framework.Path{secretPath(b, k, fields, write, view, "A fake credential.", "A fake credential for tests.")}
}

// spyStorage counts Gets and Puts by key and can fail Puts.
type spyStorage struct {
	logical.Storage
	mu      sync.Mutex
	gets    map[string]int
	puts    map[string]int
	failPut func(key string) error
}

func newSpyStorage(inner logical.Storage) *spyStorage {
	return &spyStorage{Storage: inner, gets: map[string]int{}, puts: map[string]int{}}
}

func (s *spyStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	s.mu.Lock()
	s.gets[key]++
	s.mu.Unlock()
	return s.Storage.Get(ctx, key)
}

func (s *spyStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	s.mu.Lock()
	s.puts[e.Key]++
	fail := s.failPut
	s.mu.Unlock()
	if fail != nil {
		if err := fail(e.Key); err != nil {
			return err
		}
	}
	return s.Storage.Put(ctx, e)
}

func (s *spyStorage) setFailPut(f func(key string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failPut = f
}

// counted sums the counts of keys under prefix, and resets them when reset.
func (s *spyStorage) counted(m map[string]int, prefix string, reset bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, c := range m {
		if strings.HasPrefix(k, prefix) {
			n += c
			if reset {
				delete(m, k)
			}
		}
	}
	return n
}

func (s *spyStorage) putsUnder(prefix string) int { return s.counted(s.puts, prefix, false) }
func (s *spyStorage) getsUnder(prefix string) int { return s.counted(s.gets, prefix, false) }
func (s *spyStorage) resetCounts()                { s.counted(s.gets, "", true); s.counted(s.puts, "", true) }

// engEnv is a mount with the fake type, over a spied in-memory storage that
// outlives its backends: fresh() starts another backend over it, as a
// restart or a failover would.
type engEnv struct {
	t      *testing.T
	inner  *logical.InmemStorage
	s      *spyStorage
	clock  *testClock
	out    *fakeOutside
	logs   *syncBuffer
	events *eventLog
	b      *backend
}

func newEngEnv(t *testing.T) *engEnv {
	t.Helper()
	inner := &logical.InmemStorage{}
	env := &engEnv{t: t, inner: inner, s: newSpyStorage(inner), out: newFakeOutside(), logs: &syncBuffer{},
		events: &eventLog{}, clock: &testClock{now: time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)}}
	env.b = env.fresh()
	return env
}

// fresh starts a new backend over the same storage, clock and outside
// system; it is stopped when the test ends.
func (env *engEnv) fresh() *backend {
	env.t.Helper()
	conf := logical.TestBackendConfig()
	conf.StorageView = env.s
	conf.Logger = hclog.New(&hclog.LoggerOptions{Output: env.logs, Level: hclog.Trace})
	conf.EventsSender = env.events
	b := newBackendOf(env.clock.Now, smtpKind(), sshKind(), dkimKind(), apiKeyKind(), oauthKind(), fakeKind(env.out))
	if err := b.Setup(context.Background(), conf); err != nil {
		env.t.Fatal(err)
	}
	env.t.Cleanup(func() { b.clean(context.Background()) })
	return b
}

// do runs one request on b as Vault routes it (existence check included).
func (env *engEnv) do(b *backend, op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	env.t.Helper()
	req := &logical.Request{Operation: op, Path: path, Data: data, Storage: env.s, DisplayName: "token-tester", EntityID: "entity-1"}
	if op == logical.UpdateOperation || op == logical.CreateOperation {
		checkFound, exists, err := b.HandleExistenceCheck(context.Background(), req)
		if err != nil {
			var ue errutil.UserError
			if errors.As(err, &ue) {
				return logical.ErrorResponse(ue.Err), nil
			}
			return nil, err
		}
		if checkFound {
			req.Operation = logical.CreateOperation
			if exists {
				req.Operation = logical.UpdateOperation
			}
		}
	}
	return b.HandleRequest(context.Background(), req)
}

func (env *engEnv) ok(op logical.Operation, path string, data map[string]interface{}) map[string]interface{} {
	env.t.Helper()
	resp, err := env.do(env.b, op, path, data)
	if err != nil || (resp != nil && resp.IsError()) {
		env.t.Fatalf("%s %s: %v %v", op, path, err, resp)
	}
	if resp == nil {
		return nil
	}
	return resp.Data
}

// status runs a request that must fail and returns its HTTP status and
// message.
func (env *engEnv) status(op logical.Operation, path string, data map[string]interface{}) (int, string) {
	env.t.Helper()
	resp, err := env.do(env.b, op, path, data)
	code := statusOf(op, resp, err)
	msg := ""
	if err != nil {
		msg = err.Error()
	} else if resp != nil && resp.IsError() {
		msg = resp.Error().Error()
	}
	return code, msg
}

// rollback runs Vault's rollback on b at once (no minimum WAL age), as
// `vault write sys/rollback`-style immediate rollbacks do; it returns the
// WAL rollback's error, if any.
func (env *engEnv) rollback(b *backend) error {
	env.t.Helper()
	req := &logical.Request{Operation: logical.RollbackOperation, Storage: env.s, Data: map[string]interface{}{"immediate": true}}
	resp, err := b.HandleRequest(context.Background(), req)
	if err != nil {
		return err
	}
	if resp != nil && resp.IsError() {
		return resp.Error()
	}
	return nil
}

func (env *engEnv) wals() []string {
	env.t.Helper()
	keys, err := framework.ListWAL(context.Background(), env.inner)
	if err != nil {
		env.t.Fatal(err)
	}
	return keys
}

// entry reads a stored secret straight from storage.
func (env *engEnv) entry(kind, tenant, name string) *secretEntry {
	env.t.Helper()
	e, err := loadSecret(context.Background(), env.inner, kind, tenant, name)
	if err != nil || e == nil {
		env.t.Fatalf("loading %s/%s/%s: %v (nil: %v)", kind, tenant, name, err, e == nil)
	}
	return e
}

func (env *engEnv) writeFake(tenant, name string, data map[string]interface{}) {
	env.t.Helper()
	d := map[string]interface{}{"value": "initial-" + name}
	for k, v := range data {
		d[k] = v
	}
	env.ok(logical.CreateOperation, "fake/"+tenant+"/"+name, d)
}

// stages maps version numbers to their stage names.
func stages(b *backend, e *secretEntry) map[int]string {
	out := map[int]string{}
	for i := range e.Versions {
		out[e.Versions[i].Version] = b.kinds[e.Kind].stageOf(&e.Versions[i])
	}
	return out
}

// checkSettled asserts the invariants a rotation must leave whatever
// happened: one current version, no pending one, no WAL, and every
// credential set outside either live in Vault (current or previous) or
// undone, with nothing valid outside that Vault does not serve.
func (env *engEnv) checkSettled(b *backend, tenant, name string) *secretEntry {
	env.t.Helper()
	e := env.entry("fake", tenant, name)
	st := stages(b, e)
	current := 0
	for n, s := range st {
		switch s {
		case stageCurrent:
			current++
			if n != e.CurrentVersion {
				env.t.Errorf("version %d is current but current_version is %d", n, e.CurrentVersion)
			}
		case stagePending:
			env.t.Errorf("version %d is still pending: %v", n, st)
		}
	}
	if current != 1 {
		env.t.Errorf("%d current versions, want 1: %v", current, st)
	}
	if w := env.wals(); len(w) != 0 {
		env.t.Errorf("WAL entries left: %v", w)
	}
	path := "fake/" + tenant + "/" + name
	owed := map[int]bool{}
	for _, r := range e.Removals {
		owed[r.Version] = true
	}
	for _, n := range env.out.liveVersions(path) {
		if st[n] != stageCurrent && st[n] != stagePrevious && !owed[n] {
			env.t.Errorf("version %d is valid outside but %q in Vault (stages %v)", n, st[n], st)
		}
	}
	for _, c := range env.out.callsOf(stepSet, path) {
		if st[c.version] != stageCurrent && st[c.version] != stagePrevious && !env.undone(path, c.version) && !env.removed(path, c.version) {
			env.t.Errorf("version %d was set outside, is %q in Vault, and was never undone", c.version, st[c.version])
		}
	}
	return e
}

// removed reports whether version's credential was removed outside after it
// left service (removal.go).
func (env *engEnv) removed(path string, version int) bool {
	for _, c := range env.out.callsOf("end_overlap", path) {
		if c.version == version {
			for _, n := range env.out.liveVersions(path) {
				if n == version {
					return false
				}
			}
			return true
		}
	}
	return false
}

func (env *engEnv) undone(path string, version int) bool {
	for _, c := range env.out.callsOf(stepUndo, path) {
		if c.version == version {
			return true
		}
	}
	return false
}

func historyRows(t *testing.T, data map[string]interface{}) []map[string]interface{} {
	t.Helper()
	raw, _ := json.Marshal(data["history"])
	var rows []map[string]interface{}
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	return rows
}

// A staged rotation runs create, set, test and finish in that order under
// one WAL entry, which is gone afterwards; the new version is pending until
// finish, then current, and the one it replaced is previous.
func TestEngine_StagedRotationSucceeds(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)

	var seen []string
	env.b.testCrashAfter = func(step string) error {
		e := env.entry("fake", "t1", "s1")
		v := e.version(2)
		if v == nil {
			t.Fatalf("after %s: version 2 is not stored", step)
		}
		seen = append(seen, fmt.Sprintf("%s:%s:set=%v:wals=%d", step, env.b.kinds["fake"].stageOf(v), v.Set, len(env.wals())))
		return nil
	}
	data := env.ok(logical.UpdateOperation, "fake/t1/s1/rotate", map[string]interface{}{"reason": "test"})
	if data["version"] != 2 || data["previous_version"] != 1 {
		t.Fatalf("rotate answered version %v, previous_version %v; want 2 and 1", data["version"], data["previous_version"])
	}

	want := []string{
		"create:pending:set=false:wals=1",
		"set:pending:set=true:wals=1",
		"test:pending:set=true:wals=1",
		"finish:current:set=true:wals=1",
	}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Fatalf("steps seen:\n%v\nwant\n%v", seen, want)
	}
	if got := env.out.steps("fake/t1/s1"); strings.Join(got, " ") != "create:0 set:2 test:2" {
		t.Fatalf("calls into the outside system: %v", got)
	}
	if n := env.s.putsUnder(framework.WALPrefix); n != 1 {
		t.Fatalf("%d WAL writes, want 1", n)
	}
	e := env.checkSettled(env.b, "t1", "s1")
	if st := stages(env.b, e); st[1] != stagePrevious || st[2] != stageCurrent {
		t.Fatalf("stages after rotation: %v", st)
	}

	// The previous version's overlap ends a day later: the worker removes
	// it from the outside system and it expires.
	env.out.apply(func() { env.out.live["fake/t1/s1"][1] = true }) // the initial credential
	env.tick(env.b)
	env.clock.Advance(day)
	env.tick(env.b)
	if ends := env.out.callsOf("end_overlap", "fake/t1/s1"); len(ends) != 1 || ends[0].version != 1 {
		t.Fatalf("end_overlap calls: %v, want one for version 1", ends)
	}
	e = env.checkSettled(env.b, "t1", "s1")
	if st := stages(env.b, e); st[1] != statusExpired || len(env.out.liveVersions("fake/t1/s1")) != 1 {
		t.Fatalf("after the overlap: stages %v, live outside %v", st, env.out.liveVersions("fake/t1/s1"))
	}
}

// A failed set or test leaves the current version as it was: the pending
// credential is undone outside and dropped, the failure is recorded with
// its step (history, rotation_failures, next_attempt), the caller gets a
// 502, and no WAL entry is left.
func TestEngine_FailedSetOrTestIsUndone(t *testing.T) {
	for _, step := range []string{stepSet, stepTest} {
		t.Run(step, func(t *testing.T) {
			env := newEngEnv(t)
			env.writeFake("t1", "s1", nil)
			env.out.failAt(step, errors.New("outside system refused"))

			code, msg := env.status(logical.UpdateOperation, "fake/t1/s1/rotate", nil)
			if code != 502 || !strings.Contains(msg, "at the "+step+" step") || !strings.Contains(msg, "outside system refused") {
				t.Fatalf("rotate: %d %q, want a 502 naming the %s step and the error", code, msg, step)
			}
			if undos := env.out.callsOf(stepUndo, "fake/t1/s1"); len(undos) != 1 || undos[0].version != 2 {
				t.Fatalf("undo calls: %v, want one for version 2", undos)
			}
			e := env.checkSettled(env.b, "t1", "s1")
			if e.CurrentVersion != 1 || e.version(2) != nil {
				t.Fatalf("current %d, versions %v: want version 1 alone", e.CurrentVersion, stages(env.b, e))
			}
			var v fakeMaterial
			if err := decodeMaterial(e.current(), &v); err != nil || v.Value != "initial-s1" {
				t.Fatalf("current material changed: %+v %v", v, err)
			}

			read := env.ok(logical.ReadOperation, "fake/t1/s1", nil)
			wantNext := formatTime(env.clock.Now().Add(retryBase))
			if read["rotation_failures"] != 1 || read["last_rotation_error_step"] != step || read["next_attempt"] != wantNext {
				t.Fatalf("read after failure: failures %v step %v next_attempt %v (want 1, %s, %s)",
					read["rotation_failures"], read["last_rotation_error_step"], read["next_attempt"], step, wantNext)
			}
			rows := historyRows(t, env.ok(logical.ReadOperation, "fake/t1/s1/history", nil))
			if len(rows) == 0 || rows[0]["result"] != "failed" || rows[0]["step"] != step ||
				!strings.Contains(fmt.Sprint(rows[0]["error"]), "outside system refused") {
				t.Fatalf("newest history row: %v", rows)
			}

			// The next rotation works and does not reuse the undone number.
			env.out.failAt(step, nil)
			data := env.ok(logical.UpdateOperation, "fake/t1/s1/rotate", nil)
			if data["version"] != 3 || data["previous_version"] != 1 {
				t.Fatalf("rotation after the failure answered version %v previous_version %v, want 3 and 1",
					data["version"], data["previous_version"])
			}
			if e := env.checkSettled(env.b, "t1", "s1"); e.RotationFailures != 0 || e.LastRotationError != "" {
				t.Fatalf("a successful rotation left failures %d, error %q", e.RotationFailures, e.LastRotationError)
			}
		})
	}
}

// A failed create touches nothing: no pending version, no WAL, no undo.
func TestEngine_FailedCreateChangesNothingOutside(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)
	env.out.failAt(stepCreate, errors.New("no entropy"))
	if code, _ := env.status(logical.UpdateOperation, "fake/t1/s1/rotate", nil); code != 502 {
		t.Fatalf("rotate with a failing create: %d, want 502", code)
	}
	if got := env.out.steps("fake/t1/s1"); strings.Join(got, " ") != "create:0" {
		t.Fatalf("calls: %v, want create only", got)
	}
	if n := env.s.putsUnder(framework.WALPrefix); n != 0 {
		t.Fatalf("%d WAL writes for a rotation that failed before set", n)
	}
	if e := env.checkSettled(env.b, "t1", "s1"); e.LastRotationErrorStep != stepCreate {
		t.Fatalf("error step %q, want create", e.LastRotationErrorStep)
	}
}

// A set that hangs: the caller gets a 504 after stepTimeout, the pending
// version and the WAL stay (undoing at once could race the outside system),
// a second rotation is refused with 409, and Vault's rollback settles it.
func TestEngine_HangingSetTimesOutAndRollbackSettles(t *testing.T) {
	defer func(d time.Duration) { stepTimeout = d }(stepTimeout)
	stepTimeout = 50 * time.Millisecond
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)
	env.out.hangAt(stepSet, true)

	code, msg := env.status(logical.UpdateOperation, "fake/t1/s1/rotate", nil)
	if code != 504 || !strings.Contains(msg, "set step") {
		t.Fatalf("rotate with a hanging set: %d %q, want 504 naming the set step", code, msg)
	}
	if w := env.wals(); len(w) != 1 {
		t.Fatalf("WAL entries after the timeout: %v, want 1", w)
	}
	if p := env.entry("fake", "t1", "s1").pending(); p == nil || p.Version != 2 {
		t.Fatalf("pending version after the timeout: %+v", p)
	}
	if code, msg := env.status(logical.UpdateOperation, "fake/t1/s1/rotate", nil); code != 409 {
		t.Fatalf("rotate during a rotation in progress: %d %q, want 409", code, msg)
	}

	env.out.hangAt(stepSet, false)
	if err := env.rollback(env.b); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	e := env.checkSettled(env.b, "t1", "s1")
	if e.CurrentVersion != 1 || !env.undone("fake/t1/s1", 2) {
		t.Fatalf("after rollback: current %d, undone v2 %v", e.CurrentVersion, env.undone("fake/t1/s1", 2))
	}
	rows := historyRows(t, env.ok(logical.ReadOperation, "fake/t1/s1/history", nil))
	if len(rows) == 0 || rows[0]["step"] != stepUndo || rows[0]["result"] != "failed" {
		t.Fatalf("newest history row after rollback: %v", rows)
	}
}

// The crash matrix: the process dies after each step of a staged rotation,
// and a fresh backend over the same storage runs Vault's rollback, with the
// outside system failing at each step the rollback calls. Afterwards there
// is one current version, no pending one, no WAL, and every credential set
// outside is live in Vault or undone. A rollback whose undo fails keeps the
// WAL and settles on the next attempt.
func TestEngine_CrashMatrixRollbackSettles(t *testing.T) {
	defer func(d time.Duration) { stepTimeout = d }(stepTimeout)
	stepTimeout = 50 * time.Millisecond
	failures := map[string][]string{
		"none":      nil,
		"hang_test": {"hang:" + stepTest},
		"test":      {stepTest},
		"undo":      {stepUndo},
		"test+undo": {stepTest, stepUndo},
	}
	for _, crash := range []string{stepCreate, stepSet, stepTest, stepFinish} {
		for name, failing := range failures {
			t.Run("after_"+crash+"/failing_"+name, func(t *testing.T) {
				env := newEngEnv(t)
				env.writeFake("t1", "s1", nil)
				env.b.testCrashAfter = func(step string) error {
					if step == crash {
						return errCrash
					}
					return nil
				}
				_, err := env.do(env.b, logical.UpdateOperation, "fake/t1/s1/rotate", nil)
				if !errors.Is(err, errCrash) {
					t.Fatalf("rotate: %v, want the simulated crash", err)
				}
				env.b.clean(context.Background())
				for _, step := range failing {
					if hang, ok := strings.CutPrefix(step, "hang:"); ok {
						env.out.hangAt(hang, true)
						continue
					}
					env.out.failAt(step, errors.New("outside system down"))
				}

				// The rotation finishes when set is known to be done and
				// test passes on the rollback; otherwise it is undone.
				setDone := crash != stepCreate
				testFails := len(failing) > 0 && strings.HasSuffix(failing[0], stepTest)
				finishes := crash == stepFinish || (setDone && !testFails)
				needsUndo := !finishes
				undoFails := failing != nil && failing[len(failing)-1] == stepUndo

				b2 := env.fresh()
				err = env.rollback(b2)
				if needsUndo && undoFails {
					if err == nil {
						t.Fatal("rollback succeeded although undo failed")
					}
					if len(env.wals()) != 1 || env.entry("fake", "t1", "s1").pending() == nil {
						t.Fatalf("after a failed undo: WALs %v, want the WAL and the pending version kept", env.wals())
					}
					env.out.failAt(stepUndo, nil)
					err = env.rollback(env.fresh())
				}
				if err != nil {
					t.Fatalf("rollback: %v", err)
				}
				e := env.checkSettled(b2, "t1", "s1")
				want := 1
				if finishes {
					want = 2
				}
				if e.CurrentVersion != want {
					t.Fatalf("current version %d after rollback, want %d (calls %v)", e.CurrentVersion, want, env.out.steps("fake/t1/s1"))
				}
				if needsUndo && !env.undone("fake/t1/s1", 2) {
					t.Fatalf("version 2 was abandoned without undo (calls %v)", env.out.steps("fake/t1/s1"))
				}
				tests := map[string]int{stepSet: 1, stepTest: 2}[crash] // the rollback's test, and the one before a crash after test
				if finishes && crash != stepFinish && len(env.out.callsOf(stepTest, "fake/t1/s1")) != tests {
					t.Fatalf("the rollback finished version 2 without testing it again (calls %v)", env.out.steps("fake/t1/s1"))
				}
			})
		}
	}
}

// A write of new material while an interrupted rotation waits for the
// rollback stays current: the rollback undoes the older pending version
// (set outside) instead of finishing it over the write.
func TestEngine_RollbackUndoesRotationSupersededByWrite(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)
	env.b.testCrashAfter = func(step string) error {
		if step == stepSet {
			return errCrash
		}
		return nil
	}
	if _, err := env.do(env.b, logical.UpdateOperation, "fake/t1/s1/rotate", nil); !errors.Is(err, errCrash) {
		t.Fatalf("rotate: %v, want the simulated crash", err)
	}
	env.b.clean(context.Background())
	b2 := env.fresh()
	env.b = b2
	// New material written meanwhile, as a type's write does it (the fake
	// type's own write takes material on create only).
	k := b2.kinds["fake"]
	_, err := b2.modify(context.Background(), env.s, secretRef{kind: k, tenant: "t1", name: "s1"},
		func(e *secretEntry, cfg *engineConfig, now time.Time) error {
			e.LastRotated = now
			return e.addVersion(fakeMaterial{Value: "written-meanwhile"}, actor{DisplayName: "token-tester"}, now, k, cfg)
		})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.rollback(b2); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	e := env.checkSettled(b2, "t1", "s1")
	if e.CurrentVersion != 3 || e.version(2) != nil || !env.undone("fake/t1/s1", 2) || e.RotationFailures != 0 {
		t.Fatalf("current version %d, version 2 kept %v, undone %v, failures %d (calls %v)", e.CurrentVersion,
			e.version(2) != nil, env.undone("fake/t1/s1", 2), e.RotationFailures, env.out.steps("fake/t1/s1"))
	}
}
