package penguinmails

import (
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/oauth/oauthfake"
)

const oauthClientSecret = "client-secret-oauth-1"

func newOAuthFake(t *testing.T) *oauthfake.Server {
	t.Helper()
	f := oauthfake.New("client-1", oauthClientSecret)
	t.Cleanup(f.Close)
	return f
}

// writeGrant stores oauth/t1/gmail with a refresh token the fake honours.
func writeGrant(env *testEnv, f *oauthfake.Server, extra map[string]interface{}) string {
	env.t.Helper()
	rt := f.IssueRefreshToken()
	data := map[string]interface{}{"client_id": "client-1", "client_secret": oauthClientSecret, "token_url": f.TokenURL(),
		"refresh_token": rt, "scopes": "mail.read,mail.send"}
	for k, v := range extra {
		data[k] = v
	}
	env.ok(logical.CreateOperation, "oauth/t1/gmail", data)
	return rt
}

// A read returns a valid access token, refreshing first when needed; the
// client secret and refresh token are never returned.
func TestOAuth_ReadRefreshesAndNeverShowsSecrets(t *testing.T) {
	env := newTestEnv(t)
	f := newOAuthFake(t)
	rt := writeGrant(env, f, nil)
	read := env.ok(logical.ReadOperation, "oauth/t1/gmail", nil)
	at, _ := read["access_token"].(string)
	if !f.ValidAccess(at) || read["token_type"] != "Bearer" || read["state"] != "valid" || read["version"] != 2 {
		t.Fatalf("read: %v", read)
	}
	exp, _ := time.Parse(time.RFC3339, read["expires_at"].(string))
	if !exp.Equal(env.clock.Now().Add(time.Hour).Truncate(time.Second)) {
		t.Fatalf("expires_at %v, want an hour from now", exp)
	}
	for k, v := range read {
		if s, _ := v.(string); strings.Contains(s, oauthClientSecret) || strings.Contains(s, rt) {
			t.Fatalf("read returns a secret in %s", k)
		}
	}
	if n := f.TokenRequests(); n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
	// A fresh token is served as it is.
	env.ok(logical.ReadOperation, "oauth/t1/gmail", nil)
	if n := f.TokenRequests(); n != 1 {
		t.Fatalf("a read of a fresh token made a token request (%d)", n)
	}
	// min_seconds_remaining per request.
	env.clock.Advance(50 * time.Minute)
	again := env.ok(logical.ReadOperation, "oauth/t1/gmail", map[string]interface{}{"min_seconds_remaining": 900})
	if again["access_token"] == at || f.TokenRequests() != 2 {
		t.Fatalf("min_seconds_remaining=900 with 10 minutes left did not refresh")
	}
	hist := env.ok(logical.ReadOperation, "oauth/t1/gmail/history", nil)["history"].([]interface{})
	if row := hist[0].(map[string]interface{}); row["operation"] != "rotate" || row["trigger"] != "time" || row["result"] != "success" {
		t.Fatalf("newest history row: %v", row)
	}
}

// 50 concurrent reads of an expiring token make one token request; 50
// reads of a fresh token make none.
func TestOAuth_ConcurrentReadsRefreshOnce(t *testing.T) {
	env := newTestEnv(t)
	f := newOAuthFake(t)
	writeGrant(env, f, nil)
	f.Delay(50 * time.Millisecond) // a slow server widens the race
	read := func() []string {
		var wg sync.WaitGroup
		tokens := make([]string, 50)
		for i := range tokens {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				resp, err := env.do(logical.ReadOperation, "oauth/t1/gmail", nil)
				if err != nil || resp == nil || resp.IsError() {
					t.Errorf("read %d: %v %v", i, err, resp)
					return
				}
				tokens[i], _ = resp.Data["access_token"].(string)
			}(i)
		}
		wg.Wait()
		return tokens
	}
	tokens := read()
	if n := f.TokenRequests(); n != 1 {
		t.Fatalf("50 concurrent reads of an expiring token made %d token requests, want 1", n)
	}
	for _, tok := range tokens {
		if tok != tokens[0] || !f.ValidAccess(tok) {
			t.Fatalf("reads got different or invalid tokens")
		}
	}
	read()
	if n := f.TokenRequests(); n != 1 {
		t.Fatalf("50 reads of a fresh token made %d more token requests", n-1)
	}
}

// The worker refreshes a token refresh_lead before it expires, with no
// read; a rotated refresh token replaces the old one in the same write.
func TestOAuth_BackgroundRefreshAndRotatedRefreshToken(t *testing.T) {
	env := newTestEnv(t)
	f := newOAuthFake(t)
	f.RotateRefreshTokens(true)
	rt := writeGrant(env, f, nil)
	env.tick() // due at once: no access token yet
	if n := f.TokenRequests(); n != 1 {
		t.Fatalf("background refresh: %d token requests", n)
	}
	if f.Honoured(rt) {
		t.Fatal("the fake still honours the first refresh token")
	}
	env.clock.Advance(54 * time.Minute) // 6 minutes left: outside the 5-minute lead
	env.tick()
	if n := f.TokenRequests(); n != 1 {
		t.Fatalf("refreshed before the lead: %d", n)
	}
	env.clock.Advance(2 * time.Minute)
	env.tick()
	if n := f.TokenRequests(); n != 2 {
		t.Fatalf("no refresh inside the lead: %d", n)
	}
	// The stored refresh token is the one the fake honours now: another
	// refresh works.
	env.clock.Advance(time.Hour)
	read := env.ok(logical.ReadOperation, "oauth/t1/gmail", nil)
	if !f.ValidAccess(read["access_token"].(string)) || f.TokenRequests() != 3 {
		t.Fatalf("refresh with the rotated refresh token failed: %v", read)
	}
}

// An answer without expires_in gets default_token_ttl and is refreshed.
func TestOAuth_MissingExpiresInGetsDefaultTTL(t *testing.T) {
	env := newTestEnv(t)
	f := newOAuthFake(t)
	f.OmitExpiresIn(true)
	writeGrant(env, f, map[string]interface{}{"default_token_ttl": "10m"})
	read := env.ok(logical.ReadOperation, "oauth/t1/gmail", nil)
	if read["expiry_defaulted"] != true || read["expires_at"] != formatTime(env.clock.Now().Add(10*time.Minute)) {
		t.Fatalf("read: %v %v", read["expiry_defaulted"], read["expires_at"])
	}
	env.clock.Advance(6 * time.Minute)
	env.tick()
	if n := f.TokenRequests(); n != 2 {
		t.Fatalf("a token without expires_in was not refreshed: %d requests", n)
	}
}

// invalid_grant halts the secret: no more retries, reads answer 409 saying
// so, status shows it; a new consent renews it.
func TestOAuth_InvalidGrantNeedsReauthorization(t *testing.T) {
	env := newTestEnv(t)
	f := newOAuthFake(t)
	rt := writeGrant(env, f, map[string]interface{}{"auth_url": f.URL() + "/authorize"})
	f.Revoke(rt)
	resp, err := env.do(logical.ReadOperation, "oauth/t1/gmail", nil)
	if code := statusOf(logical.ReadOperation, resp, err); code != 409 || !strings.Contains(err.Error(), "needs_reauthorization") {
		t.Fatalf("read after invalid_grant: %d %v", code, err)
	}
	requests := f.TokenRequests()
	env.clock.Advance(24 * time.Hour)
	env.tick()
	if _, err := env.do(logical.ReadOperation, "oauth/t1/gmail", nil); err == nil || f.TokenRequests() != requests {
		t.Fatalf("a halted secret was retried: %d requests, want %d", f.TokenRequests(), requests)
	}
	rows := statusRows(env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"status": "failing"}))
	if len(rows) != 1 || rows[0]["halted"] != oauthNeedsReauthorization || !strings.Contains(rows[0]["last_error"].(string), "invalid_grant") {
		t.Fatalf("status rows: %v", rows)
	}
	if ev := env.events.of("penguinmails/halted", "oauth/t1/gmail"); len(ev) != 1 || ev[0].meta["state"] != oauthNeedsReauthorization {
		t.Fatalf("halted events: %v", ev)
	}

	// A new consent: auth_url, the user consents, exchange with the state.
	start := env.ok(logical.UpdateOperation, "oauth/t1/gmail/auth_url", map[string]interface{}{"redirect_uri": "https://app.example.com/cb"})
	u := start["auth_url"].(string)
	challenge := queryParam(t, u, "code_challenge")
	code := f.IssueCode("https://app.example.com/cb", challenge)
	env.ok(logical.UpdateOperation, "oauth/t1/gmail/exchange", map[string]interface{}{"code": code, "state": start["state"]})
	read := env.ok(logical.ReadOperation, "oauth/t1/gmail", nil)
	if read["state"] != "valid" || !f.ValidAccess(read["access_token"].(string)) {
		t.Fatalf("after exchange: %v", read)
	}
	// The state is used up.
	msg := env.badRequest(logical.UpdateOperation, "oauth/t1/gmail/exchange", map[string]interface{}{"code": code, "state": start["state"]})
	if !strings.Contains(msg, "unknown or expired state") {
		t.Fatalf("second exchange with the same state: %q", msg)
	}
}

// Transient failures are retried with backoff, Retry-After respected; a
// read meanwhile answers 503 rather than a token that expires too soon.
func TestOAuth_TransientFailuresBackOff(t *testing.T) {
	env := newTestEnv(t)
	f := newOAuthFake(t)
	writeGrant(env, f, nil)
	f.RateLimit("refresh_token", 120, 1)
	resp, err := env.do(logical.ReadOperation, "oauth/t1/gmail", nil)
	if code := statusOf(logical.ReadOperation, resp, err); code != 502 {
		t.Fatalf("read with a rate-limited refresh: %d %v", code, err)
	}
	resp, err = env.do(logical.ReadOperation, "oauth/t1/gmail", nil)
	if code := statusOf(logical.ReadOperation, resp, err); code != 503 || f.TokenRequests() != 1 {
		t.Fatalf("read inside Retry-After: %d %v (%d requests)", code, err, f.TokenRequests())
	}
	env.clock.Advance(61 * time.Second) // the one-minute backoff is not enough: Retry-After said 120s
	env.tick()
	if f.TokenRequests() != 1 {
		t.Fatalf("retried before Retry-After: %d requests", f.TokenRequests())
	}
	env.clock.Advance(60 * time.Second)
	env.tick()
	if f.TokenRequests() != 2 {
		t.Fatalf("not retried after Retry-After: %d requests", f.TokenRequests())
	}
	if read := env.ok(logical.ReadOperation, "oauth/t1/gmail", nil); !f.ValidAccess(read["access_token"].(string)) {
		t.Fatalf("read after recovery: %v", read)
	}
}

// Without a refresh token the secret waits for a consent.
func TestOAuth_NeedsAuthorizationUntilExchange(t *testing.T) {
	env := newTestEnv(t)
	f := newOAuthFake(t)
	env.ok(logical.CreateOperation, "oauth/t1/o365", map[string]interface{}{"client_id": "client-1", "client_secret": oauthClientSecret,
		"token_url": f.TokenURL(), "auth_url": f.URL() + "/authorize"})
	resp, err := env.do(logical.ReadOperation, "oauth/t1/o365", nil)
	if code := statusOf(logical.ReadOperation, resp, err); code != 409 || !strings.Contains(err.Error(), oauthNeedsAuthorization) {
		t.Fatalf("read before consent: %d %v", code, err)
	}
	code := f.IssueCode("https://app.example.com/cb", "")
	env.ok(logical.UpdateOperation, "oauth/t1/o365/exchange", map[string]interface{}{"code": code, "redirect_uri": "https://app.example.com/cb"})
	if read := env.ok(logical.ReadOperation, "oauth/t1/o365", nil); read["state"] != "valid" {
		t.Fatalf("after exchange: %v", read)
	}
}

// exchange calls the token endpoint under the secret's lock, bounded by
// stepTimeout: a server that does not answer is a 502 soon, and the code
// and its consent stay usable.
func TestOAuth_ExchangeBoundedByStepTimeout(t *testing.T) {
	env := newTestEnv(t)
	f := newOAuthFake(t)
	shortenStepTimeout(t, 200*time.Millisecond)
	env.ok(logical.CreateOperation, "oauth/t1/o365", map[string]interface{}{"client_id": "client-1", "client_secret": oauthClientSecret,
		"token_url": f.TokenURL(), "auth_url": f.URL() + "/authorize"})
	start := env.ok(logical.UpdateOperation, "oauth/t1/o365/auth_url", map[string]interface{}{"redirect_uri": "https://app.example.com/cb"})
	u, err := url.Parse(start["auth_url"].(string))
	if err != nil {
		t.Fatal(err)
	}
	code := f.IssueCode("https://app.example.com/cb", u.Query().Get("code_challenge"))
	exchange := map[string]interface{}{"code": code, "state": start["state"]}
	f.Delay(10 * time.Second)
	began := time.Now()
	resp, err := env.do(logical.UpdateOperation, "oauth/t1/o365/exchange", exchange)
	if got := statusOf(logical.UpdateOperation, resp, err); got != 502 || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("exchange with a silent token endpoint: %d %v, want 502 naming the deadline", got, err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("the exchange took %s: the step timeout did not bound it", took)
	}
	f.Delay(0)
	env.ok(logical.UpdateOperation, "oauth/t1/o365/exchange", exchange)
	if read := env.ok(logical.ReadOperation, "oauth/t1/o365", nil); read["state"] != "valid" {
		t.Fatalf("after the retried exchange: %v", read)
	}
}

func TestOAuth_BadInput(t *testing.T) {
	env := newTestEnv(t)
	f := newOAuthFake(t)
	base := map[string]interface{}{"client_id": "c", "token_url": f.TokenURL()}
	for _, tc := range []struct {
		data map[string]interface{}
		want string
	}{
		{map[string]interface{}{"client_id": ""}, "client_id is required"},
		{map[string]interface{}{"token_url": "http://oauth.example.com/token"}, "token_url"},
		{map[string]interface{}{"token_url": ""}, "token_url is required"},
		{map[string]interface{}{"provider": "yahoo"}, "provider"},
		{map[string]interface{}{"auth_style": "cookie"}, "auth_style"},
		{map[string]interface{}{"azure_tenant": "contoso"}, "azure_tenant applies to provider=microsoft"},
		{map[string]interface{}{"min_seconds_remaining": 7200}, "min_seconds_remaining"},
		{map[string]interface{}{"default_token_ttl": "10s"}, "default_token_ttl"},
		{map[string]interface{}{"refresh_lead": "2h"}, "refresh_lead"},
	} {
		data := map[string]interface{}{}
		for k, v := range base {
			data[k] = v
		}
		for k, v := range tc.data {
			data[k] = v
		}
		if msg := env.badRequest(logical.CreateOperation, "oauth/t1/bad", data); !strings.Contains(msg, tc.want) {
			t.Errorf("%v: %q does not name %q", tc.data, msg, tc.want)
		}
	}
	if resp, _ := env.do(logical.ReadOperation, "oauth/t1/bad", nil); resp != nil {
		t.Fatalf("a refused write stored the secret")
	}
	env.ok(logical.CreateOperation, "oauth/t1/ms", map[string]interface{}{"client_id": "c", "provider": "microsoft", "azure_tenant": "contoso.onmicrosoft.com"})
	rt := env.ok(logical.ReadOperation, "oauth/t1/ms", map[string]interface{}{"version": 1})
	if rt["token_url"] != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" {
		t.Fatalf("microsoft preset: %v", rt["token_url"])
	}
	env.ok(logical.CreateOperation, "oauth/t1/custom", base)
	msg := env.badRequest(logical.UpdateOperation, "oauth/t1/custom", map[string]interface{}{"token_url": "https://evil.example.com/token"})
	if !strings.Contains(msg, "token_url can change only together with a new refresh_token") {
		t.Fatalf("token_url change without a new grant: %q", msg)
	}
}

func queryParam(t *testing.T, raw, name string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Query().Get(name)
}
