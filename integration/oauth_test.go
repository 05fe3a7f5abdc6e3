package integration

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/oauth/oauthfake"
)

// OAuth tokens through the real Vault: the plugin process calls a fake
// token endpoint that this test process serves on loopback.

const oauthClientSecret = "it-oauth-client-secret-1"

// startOAuthFake serves a token endpoint for one client; every token and
// code it hands out is remembered for the log check when the test ends.
func startOAuthFake(t *testing.T) *oauthfake.Server {
	t.Helper()
	f := oauthfake.New("it-client", oauthClientSecret)
	rememberSecret(oauthClientSecret)
	t.Cleanup(func() {
		for _, s := range f.Issued() {
			rememberSecret(s)
		}
		f.Close()
	})
	return f
}

// writeOAuthGrant writes path through the CLI with a refresh token the fake
// honours.
func writeOAuthGrant(t *testing.T, f *oauthfake.Server, path string, extra ...string) string {
	t.Helper()
	rt := f.IssueRefreshToken()
	rememberSecret(rt)
	args := append([]string{"write", path, "client_id=it-client", "client_secret=" + oauthClientSecret,
		"token_url=" + f.TokenURL(), "auth_url=" + f.URL() + "/authorize", "refresh_token=" + rt}, extra...)
	out := vaultCLI(t, args...)
	if strings.Contains(out, rt) || strings.Contains(out, oauthClientSecret) {
		t.Fatalf("the write's output shows a secret:\n%s", out)
	}
	return rt
}

// readAccessToken reads path through the CLI and returns its access token,
// which the fake must have issued.
func readAccessToken(t *testing.T, f *oauthfake.Server, path string) string {
	t.Helper()
	data := cliData(t, "read", path)
	at, _ := data["access_token"].(string)
	rememberSecret(at)
	if !f.ValidAccess(at) || data["state"] != "valid" {
		t.Fatalf("read %s: state %v, access token issued by the server: %v", path, data["state"], f.ValidAccess(at))
	}
	return at
}

// A read answers a valid access token and a second one makes no token
// request; invalid_grant makes reads fail with 409 needs_reauthorization
// until auth_url and exchange renew the grant.
func TestOAuth_ReadRevokeAndReauthorize(t *testing.T) {
	t.Parallel()
	f := startOAuthFake(t)
	path := mount + "/oauth/it-oauth/gmail"
	rt := writeOAuthGrant(t, f, path)

	at := readAccessToken(t, f, path)
	requests := f.TokenRequests()
	if requests < 1 {
		t.Fatal("a valid access token with no token request")
	}
	if again := readAccessToken(t, f, path); again != at || f.TokenRequests() != requests {
		t.Fatalf("a second read: same token %v, %d token requests (was %d)", again == at, f.TokenRequests(), requests)
	}

	// The provider refuses the grant; a read that must refresh (it asks
	// for more life than the token has) meets invalid_grant.
	f.Revoke(rt)
	out := vaultCLIFails(t, "read", path, "min_seconds_remaining=3600")
	if !strings.Contains(out, "409") || !strings.Contains(out, "needs_reauthorization") || !strings.Contains(out, "invalid_grant") {
		t.Fatalf("read after invalid_grant:\n%s", out)
	}
	if out := vaultCLIFails(t, "read", path); !strings.Contains(out, "409") || !strings.Contains(out, "needs_reauthorization") {
		t.Fatalf("a plain read of the halted secret:\n%s", out)
	}

	// A new consent through the CLI.
	const redirect = "https://app.example.com/oauth/callback"
	start := cliData(t, "write", path+"/auth_url", "redirect_uri="+redirect)
	u, err := url.Parse(fmt.Sprint(start["auth_url"]))
	if err != nil || u.Query().Get("state") != start["state"] || u.Query().Get("code_challenge_method") != "S256" {
		t.Fatalf("auth_url %v (state %v): %v", start["auth_url"], start["state"], err)
	}
	code := f.IssueCode(redirect, u.Query().Get("code_challenge"))
	rememberSecret(code)
	ex := cliData(t, "write", path+"/exchange", "code="+code, fmt.Sprintf("state=%v", start["state"]))
	if _, shown := ex["access_token"]; shown || ex["state"] != "valid" {
		t.Fatalf("exchange answered %v", ex)
	}
	if renewed := readAccessToken(t, f, path); renewed == at {
		t.Fatal("the renewed grant serves the old access token")
	}
}

// The engine refreshes a token refresh_lead before it expires with no
// client read: Vault's periodic call (about once a minute) finds it due.
func TestOAuth_BackgroundRefreshWithoutARead(t *testing.T) {
	t.Parallel() // waits for Vault's periodic call
	f := startOAuthFake(t)
	f.ExpiresIn(90) // with refresh_lead=60s: due 30 seconds after each refresh
	path := mount + "/oauth/it-oauth/background"
	writeOAuthGrant(t, f, path, "refresh_lead=60s")
	first := readAccessToken(t, f, path)
	seen := f.TokenRequests()

	start := time.Now()
	err := pollEvery(periodicLimit, 2*time.Second, func() error {
		if n := f.TokenRequests(); n <= seen {
			return fmt.Errorf("%d token requests, as after the read", n)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("no background refresh: %v", err)
	}
	t.Logf("refreshed in the background %s after the read", time.Since(start).Round(time.Second))
	refreshed := f.TokenRequests()
	if at := readAccessToken(t, f, path); at == first || f.TokenRequests() != refreshed {
		t.Fatalf("read after the background refresh: new token %v, %d token requests (was %d)", at != first, f.TokenRequests(), refreshed)
	}
	row := historyRow(t, path, func(r map[string]interface{}) bool { return r["operation"] == "rotate" })
	actor, _ := row["actor"].(map[string]interface{})
	if row["result"] != "success" || row["trigger"] != "time" || actor["display_name"] != "penguinmails-scheduler" {
		t.Fatalf("newest rotate row %v, want a successful time-triggered refresh by penguinmails-scheduler", row)
	}
}
