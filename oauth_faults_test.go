package penguinmails

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/oauth/oauthfake"
)

// Faults of the OAuth token type that path_oauth_test.go leaves out:
// crashes between the steps of a refresh, a token server slower than a
// step may take, client authentication styles, and the places a secret
// could leak to on the way. They run on engEnv, whose storage outlives a
// backend, so that a crash can be followed by a restart and Vault's
// rollback.

const oauthPath = "oauth/t1/gmail"

// newOAuthEng is an engine env and a fake token server with one client.
func newOAuthEng(t *testing.T) (*engEnv, *oauthfake.Server) {
	t.Helper()
	return newEngEnv(t), newOAuthFake(t)
}

// writeEngGrant stores oauthPath with a refresh token the fake honours,
// and returns the token.
func writeEngGrant(env *engEnv, f *oauthfake.Server, extra map[string]interface{}) string {
	env.t.Helper()
	rt := f.IssueRefreshToken()
	data := map[string]interface{}{"client_id": "client-1", "client_secret": oauthClientSecret, "token_url": f.TokenURL(),
		"refresh_token": rt, "scopes": "mail.read,mail.send"}
	for k, v := range extra {
		data[k] = v
	}
	created := env.ok(logical.CreateOperation, oauthPath, data)
	if _, shown := created["access_token"]; shown {
		env.t.Fatalf("the create response shows an access token: %v", created)
	}
	return rt
}

// storedOAuth is the material of version n (0: the current one) as stored.
func storedOAuth(env *engEnv, n int) oauthMaterial {
	env.t.Helper()
	e := env.entry("oauth", "t1", "gmail")
	v := e.current()
	if n != 0 {
		v = e.version(n)
	}
	if v == nil {
		env.t.Fatalf("version %d of %s is not stored", n, oauthPath)
	}
	var m oauthMaterial
	if err := decodeMaterial(v, &m); err != nil {
		env.t.Fatal(err)
	}
	return m
}

// secretWatch collects every secret value a test handled, and checks that
// none reached an error, a log, a history row or an event.
type secretWatch struct {
	env    *engEnv
	fake   *oauthfake.Server
	values map[string]bool
	errs   []string
}

func watchSecrets(env *engEnv, f *oauthfake.Server) *secretWatch {
	return &secretWatch{env: env, fake: f, values: map[string]bool{oauthClientSecret: true}}
}

// collect adds every token and code the fake handed out, and the tokens of
// every stored version of oauthPath.
func (w *secretWatch) collect() {
	w.env.t.Helper()
	for _, s := range w.fake.Issued() {
		w.values[s] = true
	}
	e, err := loadSecret(context.Background(), w.env.inner, "oauth", "t1", "gmail")
	if err != nil || e == nil {
		return
	}
	for i := range e.Versions {
		var m oauthMaterial
		if err := decodeMaterial(&e.Versions[i], &m); err != nil {
			w.env.t.Fatal(err)
		}
		for _, s := range []string{m.AccessToken, m.RefreshToken} {
			if s != "" {
				w.values[s] = true
			}
		}
	}
}

// fails runs a request that must fail and returns its status; the message
// is kept for the leak check.
func (w *secretWatch) fails(op logical.Operation, path string, data map[string]interface{}) (int, string) {
	w.env.t.Helper()
	w.collect()
	code, msg := w.env.status(op, path, data)
	if code < 400 {
		w.env.t.Fatalf("%s %s: status %d, want a failure", op, path, code)
	}
	w.errs = append(w.errs, msg)
	w.collect()
	return code, msg
}

// check looks for every collected secret in the errors seen, the engine's
// log, the history and status of oauthPath, the stored error fields, and
// every event sent.
func (w *secretWatch) check() {
	env := w.env
	env.t.Helper()
	w.collect()
	places := map[string]string{"errors": strings.Join(w.errs, "\n"), "logs": env.logs.String()}
	if resp, err := env.do(env.b, logical.ReadOperation, oauthPath+"/history", nil); err == nil && resp != nil {
		raw, _ := json.Marshal(resp.Data)
		places["history"] = string(raw)
	}
	if resp, err := env.do(env.b, logical.ReadOperation, "rotation/status", nil); err == nil && resp != nil {
		raw, _ := json.Marshal(resp.Data)
		places["rotation/status"] = string(raw)
	}
	e := env.entry("oauth", "t1", "gmail")
	places["last_rotation_error"] = e.LastRotationError
	env.events.mu.Lock()
	places["events"] = fmt.Sprint(env.events.events)
	env.events.mu.Unlock()
	if len(w.values) < 2 {
		env.t.Fatalf("only %d secret values collected: the check would prove little", len(w.values))
	}
	for where, text := range places {
		for s := range w.values {
			if strings.Contains(text, s) {
				env.t.Errorf("a secret (%d characters) appears in %s", len(s), where)
			}
		}
	}
}

// settle checks that no rotation is left in flight: no WAL entry and no
// pending version.
func settle(env *engEnv) *secretEntry {
	env.t.Helper()
	if w := env.wals(); len(w) != 0 {
		env.t.Fatalf("WAL entries left: %v", w)
	}
	e := env.entry("oauth", "t1", "gmail")
	if p := e.pending(); p != nil {
		env.t.Fatalf("version %d is still pending", p.Version)
	}
	return e
}

// afterBackoff moves the clock past the secret's next automatic attempt.
func afterBackoff(env *engEnv) {
	env.t.Helper()
	if next := env.entry("oauth", "t1", "gmail").NextAttempt; next.After(env.clock.Now()) {
		env.clock.Advance(next.Sub(env.clock.Now()) + time.Second)
	}
}

func readsValidToken(env *engEnv, f *oauthfake.Server) map[string]interface{} {
	env.t.Helper()
	read := env.ok(logical.ReadOperation, oauthPath, nil)
	at, _ := read["access_token"].(string)
	if !f.ValidAccess(at) || read["state"] != "valid" {
		env.t.Fatalf("read: state %v, access token valid at the server: %v", read["state"], f.ValidAccess(at))
	}
	return read
}

// A crash after any step of a refresh against a server that rotates
// refresh tokens leaves, after a restart and Vault's rollback, a refresh
// token the server honours: the old one when the crash came before the
// server was asked, the new one (finished by the rollback) when after.
func TestOAuthFaults_CrashDuringRotatingRefreshKeepsTheGrant(t *testing.T) {
	for _, crash := range []string{stepCreate, stepSet, stepFinish} {
		t.Run(crash, func(t *testing.T) {
			env, f := newOAuthEng(t)
			f.RotateRefreshTokens(true)
			first := writeEngGrant(env, f, nil)
			w := watchSecrets(env, f)
			env.b.testCrashAfter = func(step string) error {
				if step == crash {
					return errCrash
				}
				return nil
			}
			if _, err := env.do(env.b, logical.ReadOperation, oauthPath, nil); !errors.Is(err, errCrash) {
				t.Fatalf("read: %v, want the simulated crash", err)
			}
			w.collect()
			env.b.clean(context.Background())
			env.b = env.fresh()
			if err := env.rollback(env.b); err != nil {
				t.Fatalf("rollback: %v", err)
			}
			e := settle(env)
			m := storedOAuth(env, 0)
			answered := crash != stepCreate // the server rotated the grant before the crash
			if answered {
				if e.CurrentVersion != 2 || m.RefreshToken == first || !f.Honoured(m.RefreshToken) || f.Honoured(first) ||
					!f.ValidAccess(m.AccessToken) || f.TokenRequests() != 1 {
					t.Fatalf("after the rollback: version %d, stored refresh token honoured %v, new one stored %v, access token valid %v, %d requests",
						e.CurrentVersion, f.Honoured(m.RefreshToken), m.RefreshToken != first, f.ValidAccess(m.AccessToken), f.TokenRequests())
				}
			} else if e.CurrentVersion != 1 || m.RefreshToken != first || !f.Honoured(first) || f.TokenRequests() != 0 {
				t.Fatalf("after the rollback: version %d, first refresh token kept %v and honoured %v, %d requests",
					e.CurrentVersion, m.RefreshToken == first, f.Honoured(first), f.TokenRequests())
			}
			if crash == stepSet {
				rows := historyRows(t, env.ok(logical.ReadOperation, oauthPath+"/history", nil))
				if actor, _ := rows[0]["actor"].(map[string]interface{}); rows[0]["result"] != "success" || actor["display_name"] != rollbackActor.DisplayName {
					t.Fatalf("newest history row %v, want the rollback's finish", rows[0])
				}
			}

			// A later read works with what was stored, and leaves a grant
			// the server honours. A rotation the rollback undid counts as
			// a failure: the read waits out its one-minute backoff.
			afterBackoff(env)
			readsValidToken(env, f)
			if now := storedOAuth(env, 0); !f.Honoured(now.RefreshToken) {
				t.Fatal("the stored refresh token is not honoured after the later read")
			}
			w.check()
		})
	}
}

// The one loss that cannot be avoided: the server rotated the refresh
// token, but its answer never reached storage (here the store after set
// fails, as a process dying before the write would). The rollback undoes
// the pending version, and Vault holds only the retired refresh token. The
// secret must then say so (409 needs_reauthorization), not retry forever.
func TestOAuthFaults_AnswerLostAfterRotationNeedsReauthorization(t *testing.T) {
	env, f := newOAuthEng(t)
	f.RotateRefreshTokens(true)
	first := writeEngGrant(env, f, nil)
	w := watchSecrets(env, f)
	secretKey := "" // the entry's storage key, learned from the first Put after the token request
	env.s.setFailPut(func(key string) error {
		if f.TokenRequests() == 1 && strings.Contains(key, "gmail") && !strings.Contains(key, "index/") {
			if secretKey == "" || secretKey == key {
				secretKey = key
				return errors.New("storage unavailable")
			}
		}
		return nil
	})
	w.fails(logical.ReadOperation, oauthPath, nil)
	env.s.setFailPut(nil)
	if secretKey == "" {
		t.Fatal("no store of the secret failed: the test did not simulate the loss")
	}
	if len(env.wals()) != 1 {
		t.Fatalf("WALs %v, want the rotation's WAL left for the rollback", env.wals())
	}
	if err := env.rollback(env.b); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	settle(env)
	if m := storedOAuth(env, 0); m.RefreshToken != first || f.Honoured(first) {
		t.Fatalf("stored refresh token is the first: %v; honoured: %v", m.RefreshToken == first, f.Honoured(first))
	}
	afterBackoff(env)
	code, msg := w.fails(logical.ReadOperation, oauthPath, nil)
	if code != 409 || !strings.Contains(msg, oauthNeedsReauthorization) {
		t.Fatalf("read with the retired refresh token: %d %q", code, msg)
	}
	if e := env.entry("oauth", "t1", "gmail"); e.Halted != oauthNeedsReauthorization {
		t.Fatalf("halted %q, want %s", e.Halted, oauthNeedsReauthorization)
	}
	w.check()
}

// shortenStepTimeout makes a step time out after d for this test.
func shortenStepTimeout(t *testing.T, d time.Duration) {
	old := stepTimeout
	stepTimeout = d
	t.Cleanup(func() { stepTimeout = old })
}

// A token server slower than stepTimeout: the read answers 504 and leaves
// the pending version under its WAL (the server may still act on the
// call); the rollback drops it, the grant is kept, and a later read works.
func TestOAuthFaults_SlowTokenServer(t *testing.T) {
	env, f := newOAuthEng(t)
	shortenStepTimeout(t, 200*time.Millisecond)
	f.RotateRefreshTokens(true)
	first := writeEngGrant(env, f, nil)
	w := watchSecrets(env, f)
	f.Delay(10 * time.Second)
	start := time.Now()
	code, msg := w.fails(logical.ReadOperation, oauthPath, nil)
	if code != 504 || !strings.Contains(msg, "timed out") {
		t.Fatalf("read from a slow server: %d %q, want 504", code, msg)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the read took %s: the step timeout did not bound it", took)
	}
	if len(env.wals()) != 1 || env.entry("oauth", "t1", "gmail").pending() == nil {
		t.Fatalf("WALs %v: want the WAL and the pending version left for the rollback", env.wals())
	}
	// Until the rollback settles it, a read says a rotation is in progress.
	code, msg = w.fails(logical.ReadOperation, oauthPath, nil)
	if code != 409 || !strings.Contains(msg, "rotation in progress") {
		t.Fatalf("read before the rollback: %d %q", code, msg)
	}
	f.Delay(0)
	if err := env.rollback(env.b); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	e := settle(env)
	if m := storedOAuth(env, 0); e.CurrentVersion != 1 || m.RefreshToken != first || !f.Honoured(first) {
		t.Fatalf("after the rollback: version %d, first refresh token kept %v and honoured %v", e.CurrentVersion, m.RefreshToken == first, f.Honoured(first))
	}
	afterBackoff(env)
	readsValidToken(env, f)
	w.check()
}

// auth_style must match what the server accepts. A mismatch is
// invalid_client (401): not a lost grant, so the secret is not halted, but
// a failure retried with backoff; reads answer 502, then 503 meanwhile.
func TestOAuthFaults_AuthStyle(t *testing.T) {
	for _, tc := range []struct{ server, secret string }{
		{"params", "params"}, {"header", "header"}, {"params", "header"}, {"header", "params"},
	} {
		t.Run("server="+tc.server+"/secret="+tc.secret, func(t *testing.T) {
			env, f := newOAuthEng(t)
			f.RequireAuthStyle(tc.server)
			writeEngGrant(env, f, map[string]interface{}{"auth_style": tc.secret})
			w := watchSecrets(env, f)
			if tc.server == tc.secret {
				if read := readsValidToken(env, f); read["auth_style"] != tc.secret {
					t.Fatalf("auth_style %v", read["auth_style"])
				}
				w.check()
				return
			}
			code, msg := w.fails(logical.ReadOperation, oauthPath, nil)
			if code != 502 || !strings.Contains(msg, "invalid_client") || !strings.Contains(msg, "HTTP 401") {
				t.Fatalf("read with the wrong auth_style: %d %q", code, msg)
			}
			e := env.entry("oauth", "t1", "gmail")
			if e.Halted != "" || e.RotationFailures != 1 || e.LastRotationErrorStep != stepSet || !e.NextAttempt.Equal(env.clock.Now().Add(time.Minute)) {
				t.Fatalf("after invalid_client: halted %q, failures %d, step %q, next attempt %v",
					e.Halted, e.RotationFailures, e.LastRotationErrorStep, e.NextAttempt)
			}
			if code, _ := w.fails(logical.ReadOperation, oauthPath, nil); code != 503 || f.TokenRequests() != 1 {
				t.Fatalf("read inside the backoff: %d, %d token requests", code, f.TokenRequests())
			}
			// The worker retries after the backoff, and backs off longer.
			afterBackoff(env)
			env.tick(env.b)
			if e := env.entry("oauth", "t1", "gmail"); f.TokenRequests() != 2 || e.RotationFailures != 2 || e.Halted != "" ||
				!e.NextAttempt.Equal(env.clock.Now().Add(2*time.Minute)) {
				t.Fatalf("after the retry: %d requests, %d failures, halted %q, next attempt %v", f.TokenRequests(), e.RotationFailures, e.Halted, e.NextAttempt)
			}
			// Fixing auth_style does not wait for the backoff: the next read
			// refreshes with the right style.
			env.ok(logical.UpdateOperation, oauthPath, map[string]interface{}{"auth_style": tc.server})
			readsValidToken(env, f)
			if e := env.entry("oauth", "t1", "gmail"); e.RotationFailures != 0 || e.LastRotationError != "" {
				t.Fatalf("a successful refresh left failures %d, error %q", e.RotationFailures, e.LastRotationError)
			}
			w.check()
		})
	}
}

// Scopes the server answers are shown as granted_scopes, beside the scopes
// asked for.
func TestOAuthFaults_GrantedScopes(t *testing.T) {
	env, f := newOAuthEng(t)
	f.Scope("mail.read offline_access")
	writeEngGrant(env, f, nil)
	read := readsValidToken(env, f)
	if fmt.Sprint(read["granted_scopes"]) != "[mail.read offline_access]" || fmt.Sprint(read["scopes"]) != "[mail.read mail.send]" {
		t.Fatalf("granted_scopes %v, scopes %v", read["granted_scopes"], read["scopes"])
	}
	// A server that leaves scope out of its answer grants what was asked
	// (RFC 6749 5.1); the engine shows none rather than guessing.
	f.Scope("")
	env.clock.Advance(time.Hour)
	if again := readsValidToken(env, f); again["granted_scopes"] != nil && fmt.Sprint(again["granted_scopes"]) != "[]" {
		t.Fatalf("granted_scopes after an answer without scope: %v", again["granted_scopes"])
	}
}

// provider=microsoft sets both URLs from azure_tenant (default common); a
// change of directory moves token_url, so it needs a new refresh token.
func TestOAuthFaults_MicrosoftPreset(t *testing.T) {
	env := newEngEnv(t)
	const ms = "https://login.microsoftonline.com/"
	env.ok(logical.CreateOperation, "oauth/t1/common", map[string]interface{}{"client_id": "c", "provider": "microsoft"})
	v1 := env.ok(logical.ReadOperation, "oauth/t1/common", map[string]interface{}{"version": 1})
	if v1["token_url"] != ms+"common/oauth2/v2.0/token" || v1["auth_url"] != ms+"common/oauth2/v2.0/authorize" || v1["state"] != oauthNeedsAuthorization {
		t.Fatalf("microsoft without azure_tenant: %v %v %v", v1["token_url"], v1["auth_url"], v1["state"])
	}

	env.ok(logical.CreateOperation, oauthPath, map[string]interface{}{"client_id": "c", "provider": "microsoft",
		"azure_tenant": "contoso.onmicrosoft.com", "scopes": "offline_access,https://outlook.office.com/SMTP.Send"})
	start := env.ok(logical.UpdateOperation, oauthPath+"/auth_url", map[string]interface{}{"redirect_uri": "https://app.example.com/cb"})
	u := start["auth_url"].(string)
	if !strings.HasPrefix(u, ms+"contoso.onmicrosoft.com/oauth2/v2.0/authorize?") || queryParam(t, u, "client_id") != "c" ||
		queryParam(t, u, "scope") != "offline_access https://outlook.office.com/SMTP.Send" || queryParam(t, u, "code_challenge_method") != "S256" {
		t.Fatalf("auth_url %s", u)
	}
	// The preset's own token_url may be given; another may not.
	env.ok(logical.UpdateOperation, oauthPath, map[string]interface{}{"token_url": ms + "contoso.onmicrosoft.com/oauth2/v2.0/token"})
	for _, tc := range []struct {
		data map[string]interface{}
		want string
	}{
		{map[string]interface{}{"token_url": "https://login.example.com/token"}, "token_url does not apply with provider=microsoft"},
		{map[string]interface{}{"azure_tenant": "fabrikam.com"}, "token_url can change only together with a new refresh_token"},
		{map[string]interface{}{"azure_tenant": "contoso tenant"}, "invalid azure_tenant"},
	} {
		code, msg := env.status(logical.UpdateOperation, oauthPath, tc.data)
		if code != 400 || !strings.Contains(msg, tc.want) {
			t.Errorf("%v: %d %q, want 400 naming %q", tc.data, code, msg, tc.want)
		}
	}
	env.ok(logical.UpdateOperation, oauthPath, map[string]interface{}{"azure_tenant": "fabrikam.com", "refresh_token": "rt-for-fabrikam"})
	if v := env.ok(logical.ReadOperation, oauthPath, map[string]interface{}{"version": 2}); v["token_url"] != ms+"fabrikam.com/oauth2/v2.0/token" ||
		v["azure_tenant"] != "fabrikam.com" {
		t.Fatalf("after the directory change: %v %v", v["token_url"], v["azure_tenant"])
	}
}

// No read of any version shows a refresh token; reads of old versions
// show no live secret either, and no write or exchange response shows the
// access token.
func TestOAuthFaults_VersionsAndResponsesHideTokens(t *testing.T) {
	env, f := newOAuthEng(t)
	f.RotateRefreshTokens(true)
	writeEngGrant(env, f, map[string]interface{}{"auth_url": f.URL() + "/authorize"})
	w := watchSecrets(env, f)
	readsValidToken(env, f)      // version 2
	env.clock.Advance(time.Hour) // expired: the next read refreshes
	readsValidToken(env, f)      // version 3
	w.collect()
	e := env.entry("oauth", "t1", "gmail")
	if e.CurrentVersion != 3 {
		t.Fatalf("current version %d, want 3", e.CurrentVersion)
	}
	for n := 1; n <= 3; n++ {
		read := env.ok(logical.ReadOperation, oauthPath, map[string]interface{}{"version": n})
		if _, shown := read["refresh_token"]; shown {
			t.Fatalf("version %d shows refresh_token", n)
		}
		raw, _ := json.Marshal(read)
		m := storedOAuth(env, n)
		if m.RefreshToken != "" && strings.Contains(string(raw), m.RefreshToken) {
			t.Fatalf("version %d shows its refresh token", n)
		}
	}

	// A settings write answers the current version without its access
	// token; so does an exchange.
	upd := env.ok(logical.UpdateOperation, oauthPath, map[string]interface{}{"scopes": "mail.read"})
	start := env.ok(logical.UpdateOperation, oauthPath+"/auth_url", map[string]interface{}{"redirect_uri": "https://app.example.com/cb"})
	code := f.IssueCode("https://app.example.com/cb", queryParam(t, start["auth_url"].(string), "code_challenge"))
	ex := env.ok(logical.UpdateOperation, oauthPath+"/exchange", map[string]interface{}{"code": code, "state": start["state"]})
	w.collect()
	for name, resp := range map[string]map[string]interface{}{"update": upd, "exchange": ex} {
		if _, shown := resp["access_token"]; shown {
			t.Fatalf("the %s response shows access_token", name)
		}
		raw, _ := json.Marshal(resp)
		for s := range w.values {
			if strings.Contains(string(raw), s) {
				t.Fatalf("the %s response shows a secret", name)
			}
		}
	}
	w.check()
}

// A new grant written while an interrupted refresh waits for the rollback
// stays current: the rollback drops the older pending version rather than
// finishing it over the write. Were it finished, the old grant's refresh
// token would be current again, and sent to the token_url of the write.
func TestOAuthFaults_GrantWrittenDuringInterruptedRefreshWins(t *testing.T) {
	env, f := newOAuthEng(t)
	f.RotateRefreshTokens(true)
	writeEngGrant(env, f, nil)
	env.b.testCrashAfter = func(step string) error {
		if step == stepSet {
			return errCrash
		}
		return nil
	}
	if _, err := env.do(env.b, logical.ReadOperation, oauthPath, nil); !errors.Is(err, errCrash) {
		t.Fatalf("read: %v, want the simulated crash", err)
	}
	env.b.clean(context.Background())
	env.b = env.fresh()

	other := newOAuthFake(t) // the grant moves to another authorization server
	rt := other.IssueRefreshToken()
	env.ok(logical.UpdateOperation, oauthPath, map[string]interface{}{"token_url": other.TokenURL(), "refresh_token": rt})
	if err := env.rollback(env.b); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	e := settle(env)
	if m := storedOAuth(env, 0); e.CurrentVersion != 3 || m.RefreshToken != rt {
		t.Fatalf("current version %d, the written refresh token current: %v", e.CurrentVersion, m.RefreshToken == rt)
	}
	if e.RotationFailures != 0 || !e.NextAttempt.IsZero() {
		t.Fatalf("dropping the superseded refresh counted as a failure: %d, next attempt %v", e.RotationFailures, e.NextAttempt)
	}
	readsValidToken(env, other)
	if f.TokenRequests() != 1 || other.TokenRequests() != 1 {
		t.Fatalf("token requests: %d to the old server (want 1), %d to the new (want 1)", f.TokenRequests(), other.TokenRequests())
	}
}
