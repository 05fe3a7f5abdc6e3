package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailgun"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/postmark"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/sendgrid"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses"
)

// API keys of email providers: api-keys/{tenant}/{service}, one secret per
// service and tenant. The {service} segment names the provider, and each
// provider is a policy class of its own (its config settings, its
// defaults). A rotation creates the new key at the provider (set), tests
// it (test), and deletes the previous one there when its overlap ends
// (removal.go). Postmark mints no server tokens by API: the caller supplies
// the new token to rotate, which tests it before storing it.

// keyService describes one provider: its fields, regions and driver.
type keyService struct {
	name, title string
	// secretField and idField carry the key and its provider id.
	secretField, idField string
	// fields are the service's own write fields beyond those two.
	fields        []string
	regions       []string
	defaultRegion string
	defaultURL    func(region string) (string, error)
	newDriver     func(ep provider.Endpoint) (provider.Driver, error)
	policy        typePolicy
	manual        bool
	// check validates a key the caller wrote (required attributes).
	check func(k provider.Key, region string) error
}

// Default rotation policy of API keys: the feature document's 90 days and
// 7-day alert; the previous key stays valid for a day.
var apiKeyPolicy = typePolicy{RotationPeriod: 90 * day, AlertThreshold: 7 * day, GracePeriod: day, RiskLevel: "medium"}

var keyServices = []*keyService{
	{name: "mailgun", title: "Mailgun API key", secretField: "api_key", idField: "key_id",
		fields: []string{"role", "domain", "key_name", "region"}, regions: mailgun.Regions, defaultRegion: "us",
		defaultURL: mailgun.DefaultBaseURL, policy: apiKeyPolicy, check: checkMailgunKey,
		newDriver: func(ep provider.Endpoint) (provider.Driver, error) { return mailgun.New(ep) }},
	{name: "postmark", title: "Postmark server token", secretField: "server_token",
		fields: []string{"account_token", "message_stream"}, regions: postmark.Regions, defaultRegion: postmark.Regions[0],
		defaultURL: postmark.DefaultBaseURL, policy: apiKeyPolicy, manual: true,
		newDriver: func(ep provider.Endpoint) (provider.Driver, error) { return postmark.New(ep) }},
	{name: "sendgrid", title: "SendGrid API key", secretField: "api_key", idField: "api_key_id",
		fields: []string{"scopes", "key_name", "region"}, regions: sendgrid.Regions, defaultRegion: "global",
		defaultURL: sendgrid.DefaultBaseURL, policy: apiKeyPolicy, check: checkSendGridKey,
		newDriver: func(ep provider.Endpoint) (provider.Driver, error) { return sendgrid.New(ep) }},
	{name: "ses", title: "SES access key", secretField: "secret_access_key", idField: "access_key_id",
		fields: []string{"iam_user", "region"}, regions: ses.Regions,
		defaultURL: ses.DefaultBaseURL, policy: apiKeyPolicy, check: checkSESKey,
		newDriver: func(ep provider.Endpoint) (provider.Driver, error) { return ses.New(ep) }},
}

func keyServiceNamed(name string) *keyService {
	for _, s := range keyServices {
		if s.name == name {
			return s
		}
	}
	return nil
}

func keyServiceNames() []string {
	out := make([]string, 0, len(keyServices))
	for _, s := range keyServices {
		out = append(out, s.name)
	}
	return out
}

// apiKeySettings apply to every version of an API key.
type apiKeySettings struct {
	Region        string `json:"region,omitempty"`
	BaseURL       string `json:"base_url,omitempty"`
	Account       string `json:"account,omitempty"`
	MessageStream string `json:"message_stream,omitempty"`
}

// apiKeyMaterial is one version: the provider's key.
type apiKeyMaterial struct {
	Key          provider.Key `json:"key"`
	AccountToken string       `json:"account_token,omitempty"`
}

func apiKeyKind() *secretKind {
	k := &secretKind{
		Name:         "api-keys",
		Title:        "provider API key",
		configPrefix: "api_keys",
		defaults:     apiKeyPolicy,
		paths:        pathAPIKey,
		create:       createAPIKey,
		set:          setAPIKey,
		test:         testAPIKey,
		undo:         undoAPIKey,
		endOverlap:   removeAPIKey,
		needsRemoval: func(v *secretVersion) bool {
			var m apiKeyMaterial
			return decodeMaterial(v, &m) == nil && m.Key.ID != ""
		},
		onRevoke:    stripAPIKey,
		onGraceEnd:  stripAPIKey,
		graceStatus: statusGrace,
		afterGrace:  statusExpired,
		checkNameSpelling: func(_, name string) error {
			if keyServiceNamed(name) == nil {
				return badInput("invalid service %s: must be one of %s", quoteShort(name), strings.Join(keyServiceNames(), ", "))
			}
			return nil
		},
		nameRule: "The {service}: " + strings.Join(keyServiceNames(), ", ") + ".",
		rotateFields: map[string]*framework.FieldSchema{
			"server_token": {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
				Description: "Postmark only: the new server token, made in Postmark's console. It is tested with one call before it is stored."},
		},
	}
	for _, s := range keyServices {
		k.classes = append(k.classes, policyClass{key: "api-keys/" + s.name, prefix: s.name, title: s.title,
			defaults: s.policy, manual: s.manual})
	}
	return k
}

// stripAPIKey destroys the secret of a key that left service; its id stays
// so that the removal at the provider can name it.
func stripAPIKey(v *secretVersion) error {
	var m apiKeyMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return err
	}
	m.Key.Secret, m.AccountToken = "", ""
	raw, err := json.Marshal(m)
	v.Material = raw
	return err
}

func apiKeyFields() map[string]*framework.FieldSchema {
	sensitive := &framework.DisplayAttributes{Sensitive: true}
	return map[string]*framework.FieldSchema{
		"api_key":           {Type: framework.TypeString, DisplayAttrs: sensitive, Description: "SendGrid, Mailgun: the API key."},
		"api_key_id":        {Type: framework.TypeString, Description: "SendGrid: the key's id (rotation deletes the old key by it). Required."},
		"key_id":            {Type: framework.TypeString, Description: "Mailgun: the key's id in the Keys API. Required."},
		"scopes":            {Type: framework.TypeCommaStringSlice, Description: "SendGrid: the key's scopes; each new key gets exactly these. Required."},
		"key_name":          {Type: framework.TypeString, Description: "SendGrid name or Mailgun description of the key; new keys get it with their version, \"name (v3)\"."},
		"role":              {Type: framework.TypeString, Description: "Mailgun: the key's role (" + strings.Join(mailgun.Roles, ", ") + "). Required."},
		"domain":            {Type: framework.TypeString, Description: "Mailgun: the sending domain of a domain-scoped key."},
		"server_token":      {Type: framework.TypeString, DisplayAttrs: sensitive, Description: "Postmark: the server API token."},
		"account_token":     {Type: framework.TypeString, DisplayAttrs: sensitive, Description: "Postmark: an optional account API token."},
		"message_stream":    {Type: framework.TypeString, Description: "Postmark: the message stream to send with (default outbound)."},
		"access_key_id":     {Type: framework.TypeString, Description: "SES: the IAM access key id. Required."},
		"secret_access_key": {Type: framework.TypeString, DisplayAttrs: sensitive, Description: "SES: the secret access key. Required."},
		"iam_user":          {Type: framework.TypeString, Description: "SES: the IAM user that owns the key. Required."},
		"region": {Type: framework.TypeString, Description: "Mailgun us|eu (default us); SendGrid global|eu (default global); " +
			"SES an AWS region with SES (required)."},
		"base_url": {Type: framework.TypeString, Description: "The provider's API root; default its public URL for the region. " +
			"https, or http to a loopback address only."},
		"account": {Type: framework.TypeString, Description: "Name of a config/providers entry of the same provider whose credential " +
			"creates and deletes keys; empty: the secret's own current key does."},
	}
}

func pathAPIKey(b *backend, k *secretKind) []*framework.Path {
	return []*framework.Path{
		secretPath(b, k, apiKeyFields(), writeAPIKey, viewAPIKey, "Create, read, update and delete a provider API key.", apiKeyHelp),
	}
}

// serviceFields lists every field that belongs to one service or another,
// so that a field of another service is refused by name.
func serviceFields(s *keyService) []string {
	out := append([]string{s.secretField}, s.fields...)
	if s.idField != "" {
		out = append(out, s.idField)
	}
	return out
}

func refuseForeignFields(s *keyService, d *framework.FieldData) error {
	own := serviceFields(s)
	for _, other := range keyServices {
		for _, f := range serviceFields(other) {
			if _, given := d.GetOk(f); given && !slices.Contains(own, f) {
				slices.Sort(own)
				return badInput("%s does not apply to %s keys; %s takes %s, base_url and account", f, s.name, s.name, strings.Join(own, ", "))
			}
		}
	}
	return nil
}

func writeAPIKey(ctx context.Context, b *backend, req *logical.Request, d *framework.FieldData, e *secretEntry, cfg *engineConfig, now time.Time) error {
	svc := keyServiceNamed(e.Name)
	if err := refuseForeignFields(svc, d); err != nil {
		return err
	}
	creating := e.current() == nil
	settings := apiKeySettings{Region: svc.defaultRegion}
	var cur apiKeyMaterial
	if !creating {
		if err := json.Unmarshal(e.Settings, &settings); err != nil {
			return fmt.Errorf("decoding api key settings: %w", err)
		}
		if err := decodeMaterial(e.current(), &cur); err != nil {
			return err
		}
	}
	next := cur
	next.Key.Scopes = slices.Clone(cur.Key.Scopes)
	if err := applyAPIKeyFields(d, svc, &settings, &next); err != nil {
		return err
	}
	if err := b.checkAPIKey(ctx, req.Storage, svc, settings, next); err != nil {
		return err
	}
	raw, err := json.Marshal(settings)
	if err != nil {
		return err
	}
	e.Settings = raw
	newKey := next.Key.Secret != cur.Key.Secret || next.Key.ID != cur.Key.ID
	if !creating && !newKey {
		// The key's attributes (name, scopes, role, ...) describe the key
		// in force and its successors: corrected in place.
		cur := e.current()
		cur.Material, err = json.Marshal(next)
		return err
	}
	from := e.CurrentVersion
	if err := e.addVersion(next, actorOf(req), now, e.kindOf(b), cfg); err != nil {
		return err
	}
	e.LastRotated = now
	if !creating {
		e.record(historyEntry{Time: now, Operation: "write", Trigger: triggerManual,
			Reason: "key replaced by write", Actor: actorOf(req), Result: "success",
			FromVersion: from, ToVersion: e.CurrentVersion}, cfg.HistoryLimit)
	}
	return nil
}

// applyAPIKeyFields copies the given fields into settings and m.
func applyAPIKeyFields(d *framework.FieldData, svc *keyService, settings *apiKeySettings, m *apiKeyMaterial) error {
	str := func(field string, dst *string) {
		if v, ok := d.GetOk(field); ok {
			*dst = strings.TrimSpace(v.(string))
		}
	}
	str(svc.secretField, &m.Key.Secret)
	if svc.idField != "" {
		str(svc.idField, &m.Key.ID)
	}
	str("key_name", &m.Key.Name)
	str("role", &m.Key.Role)
	str("domain", &m.Key.Domain)
	str("iam_user", &m.Key.User)
	str("account_token", &m.AccountToken)
	str("message_stream", &settings.MessageStream)
	str("region", &settings.Region)
	str("base_url", &settings.BaseURL)
	str("account", &settings.Account)
	if v, ok := d.GetOk("scopes"); ok {
		m.Key.Scopes = nil
		for _, s := range v.([]string) {
			if s = strings.TrimSpace(s); s != "" {
				m.Key.Scopes = append(m.Key.Scopes, s)
			}
		}
		slices.Sort(m.Key.Scopes)
		m.Key.Scopes = slices.Compact(m.Key.Scopes)
	}
	return nil
}

// Bounds of API key fields.
const (
	maxKeyLen      = 1024
	maxKeyNameLen  = 100
	maxScopes      = 500
	maxScopeLen    = 128
	maxBaseURLLen  = 2048
	maxAttrLen     = 255
	defaultMsgStrm = "outbound"
)

var keyAttrRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@:/+-]*$`)

// keyIDRe is keyAttrRe for provider key ids, which may also begin with "-"
// or "_": SendGrid's are base64url. A leading "." stays refused, since an
// id goes into the provider's URL path.
var keyIDRe = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._@:/+-]*$`)

// checkAPIKey validates a key and its settings as a whole: what every
// service requires, then the service's own rules.
func (b *backend) checkAPIKey(ctx context.Context, s logical.Storage, svc *keyService, settings apiKeySettings, m apiKeyMaterial) error {
	if m.Key.Secret == "" || len(m.Key.Secret) > maxKeyLen || strings.ContainsAny(m.Key.Secret, " \t\r\n") {
		return badInput("%s is required: 1 to %d characters without spaces", svc.secretField, maxKeyLen)
	}
	if svc.idField != "" && m.Key.ID == "" {
		return badInput("%s is required: rotation deletes the old key at %s by its id", svc.idField, svc.name)
	}
	for field, v := range map[string]string{"key_id": m.Key.ID, "role": m.Key.Role, "domain": m.Key.Domain, "iam_user": m.Key.User, "message_stream": settings.MessageStream} {
		re := keyAttrRe
		if field == "key_id" {
			re = keyIDRe
		}
		if v != "" && (len(v) > maxAttrLen || !re.MatchString(v)) {
			if field == "key_id" {
				field = svc.idField
			}
			return badInput("invalid %s %s: at most %d letters, digits and . _ @ : / + -", field, quoteShort(v), maxAttrLen)
		}
	}
	if len(m.Key.Name) > maxKeyNameLen || strings.ContainsFunc(m.Key.Name, isControl) {
		return badInput("key_name must be at most %d characters without control characters", maxKeyNameLen)
	}
	if len(m.AccountToken) > maxKeyLen {
		return badInput("account_token is too long: at most %d characters", maxKeyLen)
	}
	if err := validateOneOf("region", settings.Region, svc.regions); err != nil {
		if settings.Region == "" {
			return badInput("region is required for %s keys: one of %s", svc.name, strings.Join(svc.regions, ", "))
		}
		return err
	}
	if settings.BaseURL != "" {
		if len(settings.BaseURL) > maxBaseURLLen {
			return badInput("base_url is too long: at most %d characters", maxBaseURLLen)
		}
		if _, err := provider.CheckBaseURL(settings.BaseURL); err != nil {
			return badInput("invalid base_url %s: %v", quoteShort(settings.BaseURL), err)
		}
	}
	if err := b.checkAccount(ctx, s, svc, settings.Account); err != nil {
		return err
	}
	if svc.check != nil {
		return svc.check(m.Key, settings.Region)
	}
	return nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }

// checkAccount refuses an account that does not exist or belongs to another
// provider: a rotation would fail with it, long after the write.
func (b *backend) checkAccount(ctx context.Context, s logical.Storage, svc *keyService, name string) error {
	if name == "" {
		return nil
	}
	if svc.manual {
		return badInput("account does not apply to %s keys: %s has no API that manages keys", svc.name, svc.name)
	}
	if err := validateIdentifier("account", name); err != nil {
		return err
	}
	c, err := loadProviderCredential(ctx, s, name)
	if err != nil {
		return err
	}
	if c == nil {
		return badInput("account %s does not exist: write config/providers/%s first", quoteShort(name), name)
	}
	if c.Provider != svc.name {
		return badInput("account %s is a %s credential, not %s", quoteShort(name), c.Provider, svc.name)
	}
	return nil
}

func checkSendGridKey(k provider.Key, _ string) error {
	if len(k.Scopes) == 0 {
		return badInput("scopes is required for sendgrid keys: each new key gets exactly these scopes (a key without them would get full access)")
	}
	if len(k.Scopes) > maxScopes {
		return badInput("scopes has %d entries: at most %d", len(k.Scopes), maxScopes)
	}
	for _, s := range k.Scopes {
		if len(s) > maxScopeLen || !keyAttrRe.MatchString(s) {
			return badInput("invalid scopes entry %s: at most %d letters, digits and . _ -", quoteShort(s), maxScopeLen)
		}
	}
	return nil
}

func checkMailgunKey(k provider.Key, _ string) error {
	if err := validateOneOf("role", k.Role, mailgun.Roles); err != nil {
		if k.Role == "" {
			return badInput("role is required for mailgun keys: one of %s", strings.Join(mailgun.Roles, ", "))
		}
		return err
	}
	if k.Role == "sending" && k.Domain == "" {
		return badInput("domain is required for a mailgun key with role sending: sending keys are domain keys")
	}
	if k.Domain != "" {
		return validateHost("domain", k.Domain)
	}
	return nil
}

func checkSESKey(k provider.Key, _ string) error {
	if err := checkAccessKeyID("access_key_id", k.ID); err != nil {
		return err
	}
	if err := ses.CheckSecretAccessKey(k.Secret); err != nil {
		return badInput("invalid secret_access_key: %v", err)
	}
	if k.User == "" {
		return badInput("iam_user is required for ses keys: rotation creates the new key for that IAM user")
	}
	return nil
}

func checkAccessKeyID(field, id string) error {
	if err := ses.CheckAccessKeyID(id); err != nil {
		return badInput("invalid %s: %v", field, err)
	}
	return nil
}

func viewAPIKey(e *secretEntry, v *secretVersion, withSecrets bool) (map[string]interface{}, error) {
	var s apiKeySettings
	if err := json.Unmarshal(e.Settings, &s); err != nil {
		return nil, fmt.Errorf("decoding api key settings: %w", err)
	}
	var m apiKeyMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return nil, err
	}
	svc := keyServiceNamed(e.Name)
	out := map[string]interface{}{"service": svc.name, "region": s.Region, "base_url": s.BaseURL, "account": s.Account}
	if s.BaseURL == "" {
		out["base_url"], _ = svc.defaultURL(s.Region)
	}
	if svc.idField != "" {
		out[svc.idField] = m.Key.ID
	}
	secret := withSecrets && m.Key.Secret != ""
	if secret {
		out[svc.secretField] = m.Key.Secret
	}
	switch svc.name {
	case "sendgrid":
		out["scopes"], out["key_name"] = m.Key.Scopes, m.Key.Name
	case "mailgun":
		out["role"], out["domain"], out["key_name"] = m.Key.Role, m.Key.Domain, m.Key.Name
	case "postmark":
		out["message_stream"] = s.MessageStream
		if out["message_stream"] == "" {
			out["message_stream"] = defaultMsgStrm
		}
		if secret && m.AccountToken != "" {
			out["account_token"] = m.AccountToken
		}
	case "ses":
		out["iam_user"] = m.Key.User
		out["smtp_username"] = m.Key.ID
		out["smtp_endpoint"] = "email-smtp." + s.Region + ".amazonaws.com"
		if secret {
			pw, err := ses.SMTPPassword(m.Key.Secret, s.Region)
			if err != nil {
				return nil, fmt.Errorf("deriving the SES SMTP password of version %d: the stored key or region is not valid", v.Version)
			}
			out["smtp_password"] = pw
		}
	}
	return out, nil
}

const apiKeyHelp = `
An email provider's API key, one per tenant and service (postmark, mailgun,
sendgrid, ses), versioned like every secret of this engine.

  vault write penguinmails/api-keys/tenant-1/sendgrid api_key=SG.xxx \
      api_key_id=abc123 scopes=mail.send,api_keys.create,api_keys.delete
  vault write penguinmails/api-keys/tenant-1/mailgun api_key=key-xxx key_id=k1 role=admin region=eu
  vault write penguinmails/api-keys/tenant-1/ses access_key_id=AKIA... \
      secret_access_key=... iam_user=ses-sender region=eu-west-1
  vault write penguinmails/api-keys/tenant-1/postmark server_token=xxx message_stream=outbound
  vault read  penguinmails/api-keys/tenant-1/ses      (also smtp_username, smtp_password)

Rotation creates the new key at the provider with the current key's name
(tagged with its version), scopes, role or IAM user, tests it with one
authenticated call, and makes it current; the previous key stays valid for
the overlap (config {service}_grace_period, default 24h) and is then deleted
at the provider, retried with backoff until it is. rotate with
revoke_previous=true deletes it at once. Keys are created and deleted with
the credential named by account (config/providers/{name}), or else with the
secret's own current key. Postmark server tokens are made in Postmark's
console: rotate takes the new one as server_token and tests it first; a
Postmark secret is reported due but never rotated automatically.
`
