package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/oauth"
)

// OAuth tokens: oauth/{tenant}/{name} holds a client and its grant (a
// refresh token) and serves an access token that is always valid. A refresh
// is a rotation: the set step redeems the refresh token, and finishing makes
// the new access token (and a rotated refresh token, atomically) current.
// The secret is due when its access token is refresh_lead from expiring
// (DueAt), so the worker refreshes it in the background; a read of a token
// that expires within min_seconds_remaining refreshes it first, under the
// secret's lock, so that concurrent reads make one token request.

// OAuth states beyond "valid": the secret waits for a person.
const (
	oauthNeedsAuthorization   = "needs_authorization"
	oauthNeedsReauthorization = "needs_reauthorization"
)

// Defaults and bounds of the per-secret timing settings.
const (
	defaultMinSecondsRemaining = 60
	maxMinSecondsRemaining     = 3600
	defaultRefreshLead         = 5 * time.Minute
	maxRefreshLead             = time.Hour
	defaultTokenTTL            = time.Hour
	maxTokenTTL                = 30 * day
	consentTTL                 = 10 * time.Minute
	maxConsents                = 10
	maxScopeCount              = 100
)

// oauthSettings apply to every version: the client and its endpoints.
type oauthSettings struct {
	Provider            string        `json:"provider,omitempty"`
	Directory           string        `json:"directory,omitempty"`
	ClientID            string        `json:"client_id"`
	ClientSecret        string        `json:"client_secret,omitempty"`
	TokenURL            string        `json:"token_url"`
	AuthURL             string        `json:"auth_url,omitempty"`
	Scopes              []string      `json:"scopes,omitempty"`
	AuthStyle           string        `json:"auth_style"`
	DefaultTokenTTL     time.Duration `json:"default_token_ttl"`
	MinSecondsRemaining int           `json:"min_seconds_remaining"`
	RefreshLead         time.Duration `json:"refresh_lead"`
	// Consents are the auth_url states not yet redeemed by exchange.
	Consents []consent `json:"consents,omitempty"`
}

// consent is one auth_url handed out: its state and PKCE verifier.
type consent struct {
	State       string    `json:"state"`
	Verifier    string    `json:"verifier"`
	RedirectURI string    `json:"redirect_uri"`
	Expires     time.Time `json:"expires"`
}

// oauthMaterial is one version: a token endpoint's answer.
type oauthMaterial struct {
	AccessToken     string    `json:"access_token,omitempty"`
	RefreshToken    string    `json:"refresh_token,omitempty"`
	TokenType       string    `json:"token_type,omitempty"`
	Expiry          time.Time `json:"expiry,omitempty"`
	ExpiryDefaulted bool      `json:"expiry_defaulted,omitempty"`
	Scopes          []string  `json:"scopes,omitempty"`
	RefreshRotated  bool      `json:"refresh_rotated,omitempty"`
}

func oauthKind() *secretKind {
	return &secretKind{
		Name:  "oauth",
		Title: "OAuth token",
		// The period is an upper bound on a token's age; the expiry decides.
		defaults:     typePolicy{RotationPeriod: 0, AlertThreshold: 0, RiskLevel: "high"},
		paths:        pathOAuth,
		create:       createOAuthRefresh,
		set:          redeemRefreshToken,
		onNewVersion: scheduleRefresh,
		onRevoke:     stripOAuthTokens,
		beforeRead:   refreshBeforeRead,
	}
}

func stripOAuthTokens(v *secretVersion) error {
	var m oauthMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return err
	}
	m.AccessToken, m.RefreshToken = "", ""
	raw, err := json.Marshal(m)
	v.Material = raw
	return err
}

func oauthFields() map[string]*framework.FieldSchema {
	sensitive := &framework.DisplayAttributes{Sensitive: true}
	return map[string]*framework.FieldSchema{
		"provider": {Type: framework.TypeString,
			Description: "google or microsoft: presets token_url and auth_url. Empty: give token_url."},
		"azure_tenant": {Type: framework.TypeString,
			Description: "provider=microsoft: the directory (tenant id, domain, organizations or common; default common)."},
		"client_id":     {Type: framework.TypeString, Description: "The OAuth client id. Required on create."},
		"client_secret": {Type: framework.TypeString, DisplayAttrs: sensitive, Description: "The client secret; never returned. Empty for a public client."},
		"token_url":     {Type: framework.TypeString, Description: "The token endpoint: https, or http to a loopback address."},
		"auth_url":      {Type: framework.TypeString, Description: "The authorization endpoint, for auth_url: https, or http to a loopback address."},
		"refresh_token": {Type: framework.TypeString, DisplayAttrs: sensitive,
			Description: "A refresh token; never returned. Without one the secret waits for exchange (needs_authorization)."},
		"scopes": {Type: framework.TypeCommaStringSlice, Description: "Scopes to ask for (comma list)."},
		"auth_style": {Type: framework.TypeString, AllowedValues: []interface{}{"header", "params"},
			Description: "How the client authenticates at the token endpoint: header (HTTP Basic, default) or params (in the body)."},
		"default_token_ttl": {Type: framework.TypeDurationSecond,
			Description: "Lifetime given to an access token whose answer has no expires_in (default 1h, at most 30d), so it is still refreshed."},
		"min_seconds_remaining": {Type: framework.TypeInt, Query: true,
			Description: fmt.Sprintf("On read: refresh first if the access token expires within this many seconds (default %d, at most %d). "+
				"On write: this secret's default.", defaultMinSecondsRemaining, maxMinSecondsRemaining)},
		"refresh_lead": {Type: framework.TypeDurationSecond,
			Description: "Refresh in the background this long before the access token expires (default 5m, at most 1h)."},
	}
}

func pathOAuth(b *backend, k *secretKind) []*framework.Path {
	return []*framework.Path{
		secretPath(b, k, oauthFields(), writeOAuth, viewOAuth, "Create, read, update and delete an OAuth token.", oauthHelp),
		pathOAuthAuthURL(b, k),
		pathOAuthExchange(b, k),
	}
}

func writeOAuth(ctx context.Context, b *backend, req *logical.Request, d *framework.FieldData, e *secretEntry, cfg *engineConfig, now time.Time) error {
	creating := e.current() == nil
	s := oauthSettings{AuthStyle: oauth.AuthStyleHeader, DefaultTokenTTL: defaultTokenTTL,
		MinSecondsRemaining: defaultMinSecondsRemaining, RefreshLead: defaultRefreshLead}
	if !creating {
		if err := json.Unmarshal(e.Settings, &s); err != nil {
			return fmt.Errorf("decoding oauth settings: %w", err)
		}
	}
	endpoint, client := s.TokenURL, s.clientKey()
	if err := applyOAuthFields(d, &s); err != nil {
		return err
	}
	if !creating && s.clientKey() != client {
		// A failed refresh may have been the client's fault (invalid_client
		// after a wrong client_secret or auth_style): with the client
		// changed, the next read or pass tries at once, not after the
		// backoff of the old client's failures.
		e.NextAttempt = time.Time{}
	}
	rt, newGrant := d.GetOk("refresh_token")
	if !creating && s.TokenURL != endpoint && !newGrant {
		return badInput("token_url can change only together with a new refresh_token: the current one would be sent to the new URL")
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	e.Settings = raw
	if creating {
		if _, set := d.GetOk("auto_rotate"); !set {
			if _, set := d.GetOk("disable_automated_rotation"); !set {
				e.AutoRotate = true // tokens are refreshed in the background unless asked not to
			}
		}
	}
	if !creating && !newGrant {
		return nil // client settings only
	}
	var m oauthMaterial
	if newGrant {
		m.RefreshToken = strings.TrimSpace(rt.(string))
	}
	if len(m.RefreshToken) > maxKeyLen || strings.ContainsAny(m.RefreshToken, " \t\r\n") {
		return badInput("refresh_token must be at most %d characters without spaces", maxKeyLen)
	}
	// Without a grant the secret waits for exchange; last_rotated stays
	// unset, which also keeps the shared writer from clearing that state as
	// it does for new material.
	if m.RefreshToken == "" {
		e.Halted, e.HaltedTime = oauthNeedsAuthorization, now
	}
	return e.writeVersion(m, req, now, e.kindOf(b), cfg, m.RefreshToken != "", "refresh token replaced by write")
}

// applyOAuthFields copies and validates the client settings given.
func applyOAuthFields(d *framework.FieldData, s *oauthSettings) error {
	str := func(field string, dst *string) {
		if v, ok := d.GetOk(field); ok {
			*dst = strings.TrimSpace(v.(string))
		}
	}
	str("provider", &s.Provider)
	str("azure_tenant", &s.Directory)
	str("client_id", &s.ClientID)
	str("client_secret", &s.ClientSecret)
	str("auth_style", &s.AuthStyle)
	_, urlGiven := d.GetOk("token_url")
	str("token_url", &s.TokenURL)
	str("auth_url", &s.AuthURL)
	if s.Provider != "" {
		if err := validateOneOf("provider", s.Provider, oauth.Providers); err != nil {
			return err
		}
		if s.Directory != "" && (len(s.Directory) > maxAttrLen || !keyAttrRe.MatchString(s.Directory)) {
			return badInput("invalid azure_tenant %s: a tenant id, a domain, organizations or common", quoteShort(s.Directory))
		}
		authURL, tokenURL, _ := oauth.PresetURLs(s.Provider, s.Directory)
		if urlGiven && s.TokenURL != tokenURL {
			return badInput("token_url does not apply with provider=%s: it is %s", s.Provider, tokenURL)
		}
		s.TokenURL, s.AuthURL = tokenURL, authURL
	} else if s.Directory != "" {
		return badInput("azure_tenant applies to provider=microsoft only")
	}
	if v, ok := d.GetOk("scopes"); ok {
		s.Scopes = nil
		for _, sc := range v.([]string) {
			if sc = strings.TrimSpace(sc); sc != "" && !slices.Contains(s.Scopes, sc) {
				s.Scopes = append(s.Scopes, sc)
			}
		}
	}
	if err := checkOAuthSettings(s); err != nil {
		return err
	}
	return applyOAuthTiming(d, s)
}

func checkOAuthSettings(s *oauthSettings) error {
	if s.ClientID == "" || len(s.ClientID) > maxAttrLen || strings.ContainsFunc(s.ClientID, isControl) {
		return badInput("client_id is required: 1 to %d characters", maxAttrLen)
	}
	if len(s.ClientSecret) > maxKeyLen {
		return badInput("client_secret is too long: at most %d characters", maxKeyLen)
	}
	if s.TokenURL == "" {
		return badInput("token_url is required, or provider (%s)", strings.Join(oauth.Providers, ", "))
	}
	for field, u := range map[string]string{"token_url": s.TokenURL, "auth_url": s.AuthURL} {
		if u == "" {
			continue
		}
		if len(u) > maxBaseURLLen {
			return badInput("%s is too long: at most %d characters", field, maxBaseURLLen)
		}
		if err := oauth.CheckURL(u); err != nil {
			return badInput("invalid %s %s: %v", field, quoteShort(u), err)
		}
	}
	if err := validateOneOf("auth_style", s.AuthStyle, []string{oauth.AuthStyleHeader, oauth.AuthStyleParams}); err != nil {
		return err
	}
	if len(s.Scopes) > maxScopeCount {
		return badInput("scopes has %d entries: at most %d", len(s.Scopes), maxScopeCount)
	}
	for _, sc := range s.Scopes {
		if len(sc) > maxBaseURLLen || strings.ContainsFunc(sc, isControl) {
			return badInput("invalid scopes entry %s", quoteShort(sc))
		}
	}
	return nil
}

func applyOAuthTiming(d *framework.FieldData, s *oauthSettings) error {
	if v, ok := d.GetOk("default_token_ttl"); ok {
		ttl, err := checkDuration("default_token_ttl", v.(int), maxTokenTTL)
		if err != nil {
			return err
		}
		if ttl < time.Minute {
			return badInput("default_token_ttl must be at least 60s (got %ds)", v.(int))
		}
		s.DefaultTokenTTL = ttl
	}
	if v, ok := d.GetOk("refresh_lead"); ok {
		lead, err := checkDuration("refresh_lead", v.(int), maxRefreshLead)
		if err != nil {
			return err
		}
		s.RefreshLead = lead
	}
	if v, ok := d.GetOk("min_seconds_remaining"); ok {
		n, err := checkMinRemaining(v.(int))
		if err != nil {
			return err
		}
		s.MinSecondsRemaining = n
	}
	return nil
}

func checkMinRemaining(n int) (int, error) {
	if n < 0 || n > maxMinSecondsRemaining {
		return 0, badInput("min_seconds_remaining must be between 0 and %d (got %d)", maxMinSecondsRemaining, n)
	}
	return n, nil
}

// clientKey is what identifies the client at the token endpoint.
func (s *oauthSettings) clientKey() string {
	return strings.Join([]string{s.ClientID, s.ClientSecret, s.AuthStyle, s.TokenURL}, "\x00")
}

func oauthSettingsOf(e *secretEntry) (*oauthSettings, error) {
	var s oauthSettings
	if err := json.Unmarshal(e.Settings, &s); err != nil {
		return nil, fmt.Errorf("decoding oauth settings: %w", err)
	}
	return &s, nil
}

func (s *oauthSettings) client(b *backend) oauth.Config {
	return oauth.Config{ClientID: s.ClientID, ClientSecret: s.ClientSecret, TokenURL: s.TokenURL, AuthURL: s.AuthURL,
		Scopes: s.Scopes, AuthStyle: s.AuthStyle, DefaultTTL: s.DefaultTokenTTL, Now: b.now}
}

// scheduleRefresh makes the secret due refresh_lead before its new access
// token expires; a grant with no access token yet is due at once.
func scheduleRefresh(e *secretEntry, v *secretVersion) error {
	s, err := oauthSettingsOf(e)
	if err != nil {
		return err
	}
	var m oauthMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return err
	}
	switch {
	case m.RefreshToken == "":
		e.DueAt = time.Time{} // waits for exchange
	case m.AccessToken == "":
		e.DueAt = v.CreatedTime
	default:
		e.DueAt = m.Expiry.Add(-s.RefreshLead)
	}
	return nil
}

// createOAuthRefresh starts a refresh: the pending version is filled by the
// set step, from the token endpoint's answer.
func createOAuthRefresh(_ context.Context, _ *backend, e *secretEntry, _ *engineConfig, _ time.Time, _ map[string]interface{}) (interface{}, error) {
	var m oauthMaterial
	if err := decodeMaterial(e.current(), &m); err != nil {
		return nil, err
	}
	if m.RefreshToken == "" {
		return nil, badInput("%s/%s/%s has no refresh token: write one, or authorize with auth_url and exchange", e.Kind, e.Tenant, e.Name)
	}
	return oauthMaterial{}, nil
}

// redeemRefreshToken is the set step: one token request. A grant the
// server no longer honours halts the secret in needs_reauthorization.
func redeemRefreshToken(ctx context.Context, b *backend, e *secretEntry, p *secretVersion) error {
	s, err := oauthSettingsOf(e)
	if err != nil {
		return err
	}
	var cur oauthMaterial
	if err := decodeMaterial(e.current(), &cur); err != nil {
		return err
	}
	tok, err := s.client(b).Refresh(ctx, cur.RefreshToken)
	if err != nil {
		if oauth.NeedsReauthorization(err) {
			return &haltError{state: oauthNeedsReauthorization, err: err}
		}
		return err
	}
	p.Material, err = json.Marshal(materialOf(tok))
	return err
}

func materialOf(t oauth.Token) oauthMaterial {
	return oauthMaterial{AccessToken: t.AccessToken, RefreshToken: t.RefreshToken, TokenType: t.TokenType, Expiry: t.Expiry,
		ExpiryDefaulted: t.ExpiryDefaulted, Scopes: t.Scopes, RefreshRotated: t.RefreshRotated}
}

// refreshActor is recorded for refreshes a read asked for.
var refreshActor = actor{DisplayName: "penguinmails-refresh"}

// refreshBeforeRead serves a read: a token that expires within
// min_seconds_remaining is refreshed first. The check is repeated under the
// secret's lock (rotation.only), so of many concurrent reads one refreshes
// and the others read its result.
func refreshBeforeRead(ctx context.Context, b *backend, s logical.Storage, ref secretRef, e *secretEntry, d *framework.FieldData) (*secretEntry, error) {
	st, err := oauthSettingsOf(e)
	if err != nil {
		return nil, err
	}
	min := st.MinSecondsRemaining
	if v, ok := d.GetOk("min_seconds_remaining"); ok {
		if min, err = checkMinRemaining(v.(int)); err != nil {
			return nil, err
		}
	}
	need := time.Duration(min) * time.Second
	if err := usable(e, b.now(), need); err == nil || e.Halted != "" {
		return e, err
	}
	if now := b.now(); now.Before(e.NextAttempt) {
		return nil, logical.CodedError(http.StatusServiceUnavailable, fmt.Sprintf("%s: the access token expires within %ds and the last refresh failed (%s); "+
			"the next attempt is at %s", ref.path(), min, e.LastRotationError, formatTime(e.NextAttempt)))
	}
	r := rotation{Trigger: triggerTime, Reason: fmt.Sprintf("access token expired or within %ds of expiry at read", min), Actor: refreshActor,
		only: func(e *secretEntry, _ typePolicy, now time.Time) string {
			if usable(e, now, need) == nil || e.Halted != "" {
				return "refreshed meanwhile"
			}
			return ""
		}}
	out, err := b.rotate(ctx, s, ref, r)
	if _, skip := err.(*skipped); skip {
		err = nil
	}
	if err != nil {
		if out, lerr := loadSecret(ctx, s, ref.kind.Name, ref.tenant, ref.name); lerr == nil && out != nil && out.Halted != "" {
			return nil, usable(out, b.now(), need)
		}
		return nil, err
	}
	if out == nil {
		return nil, nil
	}
	return out, usable(out, b.now(), need)
}

// usable says why e's current access token cannot be served with need of
// its life left: a 409 for a secret waiting for a person.
func usable(e *secretEntry, now time.Time, need time.Duration) error {
	if e.Halted != "" {
		return logical.CodedError(http.StatusConflict, fmt.Sprintf("%s/%s/%s is %s since %s: %s; authorize again with auth_url and exchange, "+
			"or write a new refresh_token", e.Kind, e.Tenant, e.Name, e.Halted, formatTime(e.HaltedTime), haltReason(e)))
	}
	var m oauthMaterial
	if err := decodeMaterial(e.current(), &m); err != nil {
		return err
	}
	if m.AccessToken == "" || m.Expiry.Sub(now) < need {
		return errStale
	}
	return nil
}

var errStale = fmt.Errorf("access token expires too soon")

func haltReason(e *secretEntry) string {
	if e.Halted == oauthNeedsAuthorization {
		return "no grant yet"
	}
	return "the provider refused the refresh token (" + e.LastRotationError + ")"
}

func viewOAuth(e *secretEntry, v *secretVersion, withSecrets bool) (map[string]interface{}, error) {
	s, err := oauthSettingsOf(e)
	if err != nil {
		return nil, err
	}
	var m oauthMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return nil, err
	}
	state := "valid"
	if e.Halted != "" {
		state = e.Halted
	}
	out := map[string]interface{}{
		"provider": s.Provider, "client_id": s.ClientID, "token_url": s.TokenURL, "auth_url": s.AuthURL, "auth_style": s.AuthStyle,
		"scopes": s.Scopes, "granted_scopes": m.Scopes, "token_type": m.TokenType, "expires_at": formatTime(m.Expiry),
		"expiry_defaulted": m.ExpiryDefaulted, "state": state, "min_seconds_remaining": s.MinSecondsRemaining,
		"refresh_lead": durationText(s.RefreshLead), "default_token_ttl": durationText(s.DefaultTokenTTL),
		"client_secret_set": s.ClientSecret != "", "refresh_token_set": m.RefreshToken != "",
	}
	if s.Directory != "" {
		out["azure_tenant"] = s.Directory
	}
	if withSecrets && v.Status != statusRevoked && m.AccessToken != "" {
		out["access_token"] = m.AccessToken
	}
	return out, nil
}

const oauthHelp = `
An OAuth 2.0 grant (a mailbox's Gmail or Microsoft 365 consent) that serves
an access token that is always valid. client_secret and refresh_token are
never returned.

  vault write penguinmails/oauth/tenant-1/gmail provider=google client_id=... \
      client_secret=... refresh_token=... scopes=https://mail.google.com/
  vault read  penguinmails/oauth/tenant-1/gmail            (access_token, expires_at)
  vault read  penguinmails/oauth/tenant-1/gmail min_seconds_remaining=300

A read refreshes the token first when it expires within
min_seconds_remaining (default 60); the engine refreshes in the background
refresh_lead (default 5m) before expiry. Each refresh is a version and a
history row. A refresh token the provider rotates is replaced with the
access token, in one write. A provider that refuses the grant
(invalid_grant) puts the secret in needs_reauthorization: reads answer 409
until auth_url and exchange (or a write of a new refresh_token) renew it.
Transient failures (5xx, timeouts, 429) are retried with backoff.
`
