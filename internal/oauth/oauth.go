// Package oauth is the engine's one interface to an OAuth 2.0 token
// endpoint (RFC 6749): refreshing an access token, redeeming an
// authorization code with PKCE (RFC 7636), and building the URL a user
// consents at. It wraps golang.org/x/oauth2 and turns its errors into
// states the engine acts on: a grant the user must renew, a failure worth
// retrying (with the server's Retry-After), or a refusal to fix by hand.
//
// Errors never carry a token, a client secret or a response body.
package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// Client authentication styles at the token endpoint (RFC 6749 2.3.1).
const (
	AuthStyleHeader = "header" // HTTP Basic (the default: servers must support it)
	AuthStyleParams = "params" // client_id and client_secret in the form body
)

// Presets of well-known providers.
var providerURLs = map[string]struct{ auth, token string }{
	"google":    {"https://accounts.google.com/o/oauth2/v2/auth", "https://oauth2.googleapis.com/token"},
	"microsoft": {"https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize", "https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token"},
}

// Providers are the presets' names.
var Providers = []string{"google", "microsoft"}

// PresetURLs returns the authorization and token URLs of a provider;
// Microsoft's depend on the directory tenant ("common", "organizations",
// or a tenant id or domain).
func PresetURLs(name, directory string) (authURL, tokenURL string, err error) {
	p, ok := providerURLs[name]
	if !ok {
		return "", "", fmt.Errorf("unknown provider %q: one of %s", name, strings.Join(Providers, ", "))
	}
	if name == "microsoft" {
		if directory == "" {
			directory = "common"
		}
		d := url.PathEscape(directory)
		return strings.ReplaceAll(p.auth, "{tenant}", d), strings.ReplaceAll(p.token, "{tenant}", d), nil
	}
	return p.auth, p.token, nil
}

// Config is one OAuth client at one authorization server.
type Config struct {
	ClientID, ClientSecret string
	AuthURL, TokenURL      string
	Scopes                 []string
	// AuthStyle is AuthStyleHeader (default) or AuthStyleParams.
	AuthStyle string
	// DefaultTTL is the lifetime given to an access token whose response
	// has no expires_in: such a token is still refreshed, not kept forever.
	DefaultTTL time.Duration
	HTTP       *http.Client
	// Now is the clock that turns expires_in into an expiry.
	Now func() time.Time
}

// Token is what a token endpoint answered.
type Token struct {
	AccessToken  string
	TokenType    string
	RefreshToken string
	Expiry       time.Time
	// ExpiryDefaulted is true when the answer had no expires_in and Expiry
	// was set from DefaultTTL.
	ExpiryDefaulted bool
	// Scopes are the granted scopes when the answer said (scope).
	Scopes []string
	// RefreshRotated is true when the server sent a new refresh token.
	RefreshRotated bool
}

// CheckURL accepts an https URL, or http to a loopback address (tests).
func CheckURL(raw string) error {
	if _, err := provider.CheckBaseURL(strings.SplitN(raw, "?", 2)[0]); err != nil {
		return err
	}
	return nil
}

func (c Config) oauth2(redirectURI string) *oauth2.Config {
	style := oauth2.AuthStyleInHeader
	if c.AuthStyle == AuthStyleParams {
		style = oauth2.AuthStyleInParams
	}
	return &oauth2.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, Scopes: c.Scopes, RedirectURL: redirectURI,
		Endpoint: oauth2.Endpoint{AuthURL: c.AuthURL, TokenURL: c.TokenURL, AuthStyle: style}}
}

func (c Config) context(ctx context.Context) context.Context {
	client := c.HTTP
	if client == nil {
		client = &http.Client{Timeout: provider.DefaultTimeout}
	}
	return context.WithValue(ctx, oauth2.HTTPClient, client)
}

func (c Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Refresh redeems a refresh token (grant_type=refresh_token). A server
// that sends no new refresh token leaves the old one in force.
func (c Config) Refresh(ctx context.Context, refreshToken string) (Token, error) {
	src := c.oauth2("").TokenSource(c.context(ctx), &oauth2.Token{RefreshToken: refreshToken})
	t, err := src.Token()
	if err != nil {
		return Token{}, classify("refresh", err)
	}
	return c.token(t, refreshToken), nil
}

// Exchange redeems an authorization code (grant_type=authorization_code),
// with the PKCE verifier when the consent used a challenge.
func (c Config) Exchange(ctx context.Context, code, redirectURI, verifier string) (Token, error) {
	var opts []oauth2.AuthCodeOption
	if verifier != "" {
		opts = append(opts, oauth2.VerifierOption(verifier))
	}
	t, err := c.oauth2(redirectURI).Exchange(c.context(ctx), code, opts...)
	if err != nil {
		return Token{}, classify("exchange", err)
	}
	return c.token(t, ""), nil
}

// AuthCodeURL is where the user consents: the client, scopes, state,
// the S256 challenge of verifier, and offline access so that a refresh
// token is issued.
func (c Config) AuthCodeURL(state, redirectURI, verifier string) string {
	return c.oauth2(redirectURI).AuthCodeURL(state, oauth2.AccessTypeOffline, oauth2.S256ChallengeOption(verifier))
}

// NewVerifier returns a fresh PKCE code verifier (32 random bytes).
func NewVerifier() string { return oauth2.GenerateVerifier() }

func (c Config) token(t *oauth2.Token, oldRefresh string) Token {
	out := Token{AccessToken: t.AccessToken, TokenType: t.Type(), RefreshToken: t.RefreshToken, Expiry: t.Expiry}
	if out.RefreshToken == "" {
		out.RefreshToken = oldRefresh
	}
	out.RefreshRotated = oldRefresh != "" && out.RefreshToken != oldRefresh
	// x/oauth2 counts expires_in from the wall clock; the engine's clock
	// decides (tests inject one).
	if secs, ok := expiresIn(t.Extra("expires_in")); ok {
		out.Expiry = c.now().Add(time.Duration(secs) * time.Second)
	}
	if out.Expiry.IsZero() {
		out.Expiry, out.ExpiryDefaulted = c.now().Add(c.DefaultTTL), true
	}
	if s, ok := t.Extra("scope").(string); ok && s != "" {
		out.Scopes = strings.Fields(s)
	}
	return out
}

// expiresIn reads expires_in as the server sent it: a JSON number or a
// numeric string; zero or negative is none.
func expiresIn(v interface{}) (int64, bool) {
	var n int64
	switch x := v.(type) {
	case float64:
		n = int64(x)
	case json.Number:
		n, _ = x.Int64()
	case string:
		n, _ = strconv.ParseInt(x, 10, 64)
	}
	return n, n > 0
}

// Provider names the token endpoint in the *provider.Error of a failed
// call ("token endpoint refresh: HTTP 400: invalid_grant"). Status, Code
// (RFC 6749's error code: invalid_grant, invalid_client, ...), RetryAfter,
// Temporary and RetryDelay are provider.Error's.
const Provider = "token endpoint"

// NeedsReauthorization reports a grant the server no longer honours
// (invalid_grant: revoked, expired, or the user changed their password):
// only a new consent helps, and retrying never will.
func NeedsReauthorization(err error) bool {
	var e *provider.Error
	return errors.As(err, &e) && e.Provider == Provider && e.Code == "invalid_grant"
}

// safeCode bounds what of a server's error code is repeated.
func safeCode(code string) string {
	if len(code) > 64 {
		return ""
	}
	for _, r := range code {
		if !(r == '_' || r == '-' || r == '.' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')) {
			return ""
		}
	}
	return code
}

// classify turns an x/oauth2 error into a *provider.Error, keeping the
// status, the RFC 6749 code and Retry-After, and dropping the body and
// description, which a server may fill with anything.
func classify(op string, err error) error {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		e := &provider.Error{Provider: Provider, Op: op, Code: safeCode(re.ErrorCode)}
		if re.Response != nil {
			e.Status = re.Response.StatusCode
			e.RetryAfter = provider.RetryAfter(re.Response.Header)
		}
		if e.Code == "" && e.Status == 0 {
			e.Err = errors.New("unreadable answer")
		}
		return e
	}
	e := &provider.Error{Provider: Provider, Op: op}
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		e.Err = context.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		e.Err = context.Canceled
	default:
		var ue *url.Error
		if errors.As(err, &ue) {
			e.Err = fmt.Errorf("%s %s: %w", ue.Op, redactURL(ue.URL), ue.Err)
		} else {
			// x/oauth2's own errors ("server response missing
			// access_token", a bad JSON answer) carry no secret.
			e.Err = errors.New(strings.SplitN(err.Error(), "\n", 2)[0])
			e.Status = http.StatusOK
		}
	}
	return e
}

// redactURL drops a query, which could carry a code.
func redactURL(raw string) string { return strings.SplitN(raw, "?", 2)[0] }
