package penguinmails

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/oauth"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// The first consent, inside Vault: auth_url hands out the URL to send the
// user to (with a state and a PKCE challenge whose verifier stays in
// Vault), and exchange redeems the code the provider sent back, so no other
// tool ever holds the client secret or the grant.

func pathOAuthAuthURL(b *backend, k *secretKind) *framework.Path {
	p := secretSubPath(k, "auth_url", map[string]*framework.FieldSchema{
		"redirect_uri": {Type: framework.TypeString, Required: true,
			Description: "Where the provider sends the user back with the code; registered with the client."},
	})
	p.Operations = map[logical.Operation]framework.OperationHandler{
		logical.UpdateOperation: &framework.PathOperation{Callback: b.handle(b.oauthAuthURL),
			Summary:                   "Start a consent: the URL to send the user to, with state and a PKCE challenge.",
			ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
	}
	p.HelpSynopsis = "Start an OAuth consent for this secret."
	p.HelpDescription = "Answers auth_url (with state, code_challenge S256 and offline access) and state. The state and its " +
		"PKCE verifier are kept for 10 minutes; exchange with the code and state redeems them once."
	return p
}

func pathOAuthExchange(b *backend, k *secretKind) *framework.Path {
	p := secretSubPath(k, "exchange", map[string]*framework.FieldSchema{
		"code":          {Type: framework.TypeString, Required: true, Description: "The authorization code the provider sent back."},
		"redirect_uri":  {Type: framework.TypeString, Description: "The redirect_uri of the consent (taken from state when given)."},
		"state":         {Type: framework.TypeString, Description: "The state auth_url answered: its PKCE verifier and redirect_uri are used."},
		"code_verifier": {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true}, Description: "A PKCE verifier of a consent started elsewhere."},
	})
	p.Operations = map[logical.Operation]framework.OperationHandler{
		logical.UpdateOperation: &framework.PathOperation{Callback: b.handle(b.oauthExchange),
			Summary:                   "Redeem an authorization code and store the tokens as the next version.",
			ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
	}
	p.HelpSynopsis = "Redeem an OAuth authorization code."
	p.HelpDescription = "Redeems code at the token endpoint (with the PKCE verifier of state, or code_verifier) and makes the " +
		"answer the current version; a secret in needs_authorization or needs_reauthorization becomes valid again."
	return p
}

func (b *backend) oauthAuthURL(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	ref, err := refFrom(b.kinds["oauth"], d)
	if err != nil {
		return nil, err
	}
	redirect := strings.TrimSpace(d.Get("redirect_uri").(string))
	if err := checkRedirect(redirect); err != nil {
		return nil, err
	}
	var out map[string]interface{}
	e, err := b.modify(ctx, req.Storage, ref, func(e *secretEntry, _ *engineConfig, now time.Time) error {
		s, err := oauthSettingsOf(e)
		if err != nil {
			return err
		}
		if s.AuthURL == "" {
			return badInput("auth_url is not set on %s: write auth_url or provider first", ref.path())
		}
		c := consent{State: randomState(), Verifier: oauth.NewVerifier(), RedirectURI: redirect, Expires: now.Add(consentTTL)}
		s.Consents = append(liveConsents(s.Consents, now), c)
		if len(s.Consents) > maxConsents {
			s.Consents = s.Consents[len(s.Consents)-maxConsents:]
		}
		if e.Settings, err = json.Marshal(s); err != nil {
			return err
		}
		out = map[string]interface{}{"auth_url": s.client(b).AuthCodeURL(c.State, redirect, c.Verifier), "state": c.State,
			"expires_at": formatTime(c.Expires)}
		return nil
	})
	if err != nil || e == nil {
		if e == nil && err == nil {
			return nil, notFound("no OAuth token at %s", ref.path())
		}
		return nil, err
	}
	return &logical.Response{Data: out}, nil
}

func (b *backend) oauthExchange(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	k := b.kinds["oauth"]
	ref, err := refFrom(k, d)
	if err != nil {
		return nil, err
	}
	code := strings.TrimSpace(d.Get("code").(string))
	if code == "" || len(code) > maxKeyLen {
		return nil, badInput("code is required: 1 to %d characters", maxKeyLen)
	}
	e, err := b.withEntry(ctx, req.Storage, ref, func(e *secretEntry, cfg *engineConfig, now time.Time) (*secretEntry, error) {
		s, err := oauthSettingsOf(e)
		if err != nil {
			return nil, err
		}
		redirect, verifier, err := consentFor(s, d, now)
		if err != nil {
			return nil, err
		}
		// An outside call under the secret's lock: bounded like a rotation
		// step, so a token endpoint that never answers cannot hold it.
		var tok oauth.Token
		err = callStep(ctx, func(ctx context.Context) error {
			var err error
			tok, err = s.client(b).Exchange(ctx, code, redirect, verifier)
			return err
		})
		if err != nil {
			return nil, exchangeError(ref, err)
		}
		if tok.RefreshToken == "" {
			return nil, logical.CodedError(502, fmt.Sprintf("the token endpoint of %s answered no refresh_token: ask for offline access "+
				"(Google: access_type=offline and prompt=consent; Microsoft: the offline_access scope)", ref.path()))
		}
		if e.Settings, err = json.Marshal(s); err != nil { // the consent is used up
			return nil, err
		}
		r := rotation{Trigger: triggerManual, Reason: "authorization code exchanged", Actor: actorOf(req)}
		if err := e.rotateTo(materialOf(tok), k, cfg, r, now); err != nil {
			return nil, err
		}
		return e, b.store(ctx, req.Storage, e, k, cfg, now)
	})
	if err != nil {
		return nil, err
	}
	if e == nil {
		return nil, notFound("no OAuth token at %s: write its client first", ref.path())
	}
	b.emit(ctx, "rotate", e, "trigger", triggerManual, "version", fmt.Sprint(e.CurrentVersion))
	cfg, err := b.config(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	return versionResponse(e, e.current(), k, cfg, b.now(), viewOAuth, false)
}

// consentFor finds the redirect_uri and PKCE verifier of the exchange: from
// the stored consent of state (used up), or from the request.
func consentFor(s *oauthSettings, d *framework.FieldData, now time.Time) (redirect, verifier string, err error) {
	redirect = strings.TrimSpace(d.Get("redirect_uri").(string))
	verifier = strings.TrimSpace(d.Get("code_verifier").(string))
	state := strings.TrimSpace(d.Get("state").(string))
	if state == "" {
		if redirect == "" {
			return "", "", badInput("redirect_uri is required without state")
		}
		return redirect, verifier, checkRedirect(redirect)
	}
	s.Consents = liveConsents(s.Consents, now)
	for i, c := range s.Consents {
		if c.State != state {
			continue
		}
		if redirect != "" && redirect != c.RedirectURI {
			return "", "", badInput("redirect_uri differs from the one of state's consent")
		}
		s.Consents = append(s.Consents[:i:i], s.Consents[i+1:]...)
		return c.RedirectURI, c.Verifier, nil
	}
	return "", "", badInput("unknown or expired state: start again with auth_url (a consent is valid for %s)", consentTTL)
}

func liveConsents(cs []consent, now time.Time) []consent {
	out := cs[:0:0]
	for _, c := range cs {
		if now.Before(c.Expires) {
			out = append(out, c)
		}
	}
	return out
}

func exchangeError(ref secretRef, err error) error {
	var oe *provider.Error
	if errors.As(err, &oe) && !oe.Temporary() {
		return badInput("the token endpoint refused the code for %s: %s", ref.path(), oe.Error())
	}
	return logical.CodedError(502, fmt.Sprintf("exchange for %s failed: %v", ref.path(), err))
}

func checkRedirect(uri string) error {
	if uri == "" || len(uri) > maxBaseURLLen {
		return badInput("redirect_uri is required: an absolute URL of at most %d characters", maxBaseURLLen)
	}
	if !strings.HasPrefix(uri, "https://") && !strings.HasPrefix(uri, "http://") {
		return badInput("invalid redirect_uri %s: must be an absolute http or https URL", quoteShort(uri))
	}
	return nil
}

func randomState() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
