package oauth_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/oauth"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/oauth/oauthfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

const secret = "client-secret-XYZ"

func setup(t *testing.T, style string) (*oauthfake.Server, oauth.Config) {
	t.Helper()
	f := oauthfake.New("client-1", secret)
	t.Cleanup(f.Close)
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	return f, oauth.Config{ClientID: "client-1", ClientSecret: secret, TokenURL: f.TokenURL(), AuthURL: "https://auth.example.com/authorize",
		AuthStyle: style, DefaultTTL: time.Hour, Now: func() time.Time { return now }}
}

func TestRefresh_AuthStylesAndRotation(t *testing.T) {
	for _, style := range []string{oauth.AuthStyleHeader, oauth.AuthStyleParams} {
		t.Run(style, func(t *testing.T) {
			f, c := setup(t, style)
			f.RequireAuthStyle(style)
			f.RotateRefreshTokens(true)
			rt := f.IssueRefreshToken()
			tok, err := c.Refresh(context.Background(), rt)
			if err != nil {
				t.Fatal(err)
			}
			if !f.ValidAccess(tok.AccessToken) || tok.TokenType != "Bearer" || !tok.RefreshRotated || tok.RefreshToken == rt || !f.Honoured(tok.RefreshToken) {
				t.Fatalf("token %+v", tok)
			}
			if f.Honoured(rt) {
				t.Fatal("the used refresh token is still honoured")
			}
			req := f.Requests("refresh_token")[0]
			_, _, basic := (&httpReq{req.Header}).basic()
			if (style == oauth.AuthStyleHeader) != basic {
				t.Fatalf("style %s sent Basic auth: %v", style, basic)
			}
			form, _ := url.ParseQuery(string(req.Body))
			if form.Get("grant_type") != "refresh_token" || form.Get("refresh_token") != rt {
				t.Fatalf("form %v", form)
			}
		})
	}
}

// A server that sends no new refresh token leaves the old one in force; one
// without expires_in gets DefaultTTL.
func TestRefresh_KeepsRefreshTokenAndDefaultsExpiry(t *testing.T) {
	f, c := setup(t, "")
	f.OmitExpiresIn(true)
	f.Scope("mail.send mail.read")
	rt := f.IssueRefreshToken()
	tok, err := c.Refresh(context.Background(), rt)
	if err != nil {
		t.Fatal(err)
	}
	if tok.RefreshToken != rt || tok.RefreshRotated {
		t.Fatalf("refresh token changed: %+v", tok)
	}
	if !tok.ExpiryDefaulted || !tok.Expiry.Equal(c.Now().Add(time.Hour)) {
		t.Fatalf("expiry %v defaulted %v", tok.Expiry, tok.ExpiryDefaulted)
	}
	if strings.Join(tok.Scopes, ",") != "mail.send,mail.read" {
		t.Fatalf("scopes %v", tok.Scopes)
	}
}

func TestRefresh_Failures(t *testing.T) {
	f, c := setup(t, "")
	rt := f.IssueRefreshToken()
	var oe *provider.Error

	f.Revoke(rt)
	_, err := c.Refresh(context.Background(), rt)
	if !errors.As(err, &oe) || !oauth.NeedsReauthorization(err) || oe.Temporary() || oe.Status != 400 {
		t.Fatalf("revoked grant: %v", err)
	}
	rt = f.IssueRefreshToken()
	f.Fail("refresh_token", 500, 1)
	_, err = c.Refresh(context.Background(), rt)
	if !errors.As(err, &oe) || !oe.Temporary() || oauth.NeedsReauthorization(err) {
		t.Fatalf("500: %v", err)
	}
	f.Fail("refresh_token", 408, 1)
	_, err = c.Refresh(context.Background(), rt)
	if !errors.As(err, &oe) || !oe.Temporary() || oe.Status != 408 {
		t.Fatalf("408: %v", err)
	}
	f.RateLimit("refresh_token", 9, 1)
	_, err = c.Refresh(context.Background(), rt)
	if !errors.As(err, &oe) || !oe.Temporary() || oe.RetryAfter != 9*time.Second {
		t.Fatalf("429: %v", err)
	}
	c.ClientSecret = "wrong"
	_, err = c.Refresh(context.Background(), rt)
	if !errors.As(err, &oe) || oe.Code != "invalid_client" || oe.Temporary() {
		t.Fatalf("bad client: %v", err)
	}
	c.ClientSecret = secret
	f.Hang("refresh_token", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err = c.Refresh(ctx, rt)
	if !errors.As(err, &oe) || !oe.Temporary() || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("hang: %v", err)
	}
	for _, e := range []error{err} {
		if strings.Contains(e.Error(), rt) || strings.Contains(e.Error(), secret) {
			t.Fatalf("error carries a secret: %v", e)
		}
	}
}

// The consent URL carries state, the S256 challenge and offline access;
// the code is redeemed with its verifier, and a wrong verifier is refused.
func TestExchange_PKCE(t *testing.T) {
	f, c := setup(t, "")
	verifier := oauth.NewVerifier()
	u, err := url.Parse(c.AuthCodeURL("state-1", "https://app.example.com/cb", verifier))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if q.Get("state") != "state-1" || q.Get("code_challenge_method") != "S256" || q.Get("access_type") != "offline" ||
		q.Get("redirect_uri") != "https://app.example.com/cb" || q.Get("client_id") != "client-1" {
		t.Fatalf("consent URL %s", u)
	}
	code := f.IssueCode("https://app.example.com/cb", q.Get("code_challenge"))
	tok, err := c.Exchange(context.Background(), code, "https://app.example.com/cb", verifier)
	if err != nil || !f.Honoured(tok.RefreshToken) || !f.ValidAccess(tok.AccessToken) {
		t.Fatalf("exchange: %+v %v", tok, err)
	}
	code = f.IssueCode("https://app.example.com/cb", q.Get("code_challenge"))
	_, err = c.Exchange(context.Background(), code, "https://app.example.com/cb", oauth.NewVerifier())
	var oe *provider.Error
	if !errors.As(err, &oe) || !oauth.NeedsReauthorization(err) {
		t.Fatalf("wrong verifier: %v", err)
	}
}

// Only the token endpoint's invalid_grant asks for a new consent: the same
// code from another server, or another code, does not.
func TestNeedsReauthorization_OnlyTokenEndpointInvalidGrant(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&provider.Error{Provider: oauth.Provider, Op: "refresh", Status: 400, Code: "invalid_grant"}, true},
		{fmt.Errorf("refresh: %w", &provider.Error{Provider: oauth.Provider, Op: "refresh", Status: 400, Code: "invalid_grant"}), true},
		{&provider.Error{Provider: oauth.Provider, Op: "refresh", Status: 401, Code: "invalid_client"}, false},
		{&provider.Error{Provider: "sendgrid", Op: "create", Status: 400, Code: "invalid_grant"}, false},
		{errors.New("invalid_grant"), false},
		{nil, false},
	}
	for i, c := range cases {
		if got := oauth.NeedsReauthorization(c.err); got != c.want {
			t.Errorf("case %d (%v): %v, want %v", i, c.err, got, c.want)
		}
	}
}

func TestPresetURLs(t *testing.T) {
	_, tok, err := oauth.PresetURLs("microsoft", "contoso.onmicrosoft.com")
	if err != nil || tok != "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token" {
		t.Fatalf("microsoft: %s %v", tok, err)
	}
	if _, tok, _ := oauth.PresetURLs("google", ""); tok != "https://oauth2.googleapis.com/token" {
		t.Fatalf("google: %s", tok)
	}
	if _, _, err := oauth.PresetURLs("yahoo", ""); err == nil {
		t.Fatal("unknown provider accepted")
	}
}

type httpReq struct{ h map[string][]string }

func (r *httpReq) basic() (string, string, bool) {
	v := r.h["Authorization"]
	return "", "", len(v) == 1 && strings.HasPrefix(v[0], "Basic ")
}
