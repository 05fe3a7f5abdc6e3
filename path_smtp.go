package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/base62"
	"github.com/hashicorp/vault/sdk/logical"
)

// SMTP encryption modes.
var smtpEncryptions = []string{"none", "starttls", "tls"}

const (
	smtpDefaultPort       = 587
	smtpDefaultEncryption = "starttls"
	// generatedPasswordLength of base62 gives about 262 bits, matching the
	// platform's "32 random bytes" passwords.
	generatedPasswordLength = 44
	maxUsernameLen          = 320
	maxPasswordLen          = 1024
	maxWebmailURLLen        = 2048
)

// smtpSettings apply to every version of an SMTP credential: changing them
// edits the secret in place.
type smtpSettings struct {
	Host       string `json:"host"`
	Port       int    `json:"port"`
	Encryption string `json:"encryption"`
	WebmailURL string `json:"webmail_url,omitempty"`
	// The mail server driver (smtp_driver.go).
	Driver  string `json:"driver,omitempty"`
	APIURL  string `json:"api_url,omitempty"`
	Account string `json:"account,omitempty"`
	Verify  *bool  `json:"verify,omitempty"`
	CACert  string `json:"ca_cert,omitempty"`
}

// smtpMaterial is one version: a changed username or password is a new one.
type smtpMaterial struct {
	Username  string `json:"username"`
	Password  string `json:"password"`
	Generated bool   `json:"generated"`
}

func smtpKind() *secretKind {
	return &secretKind{
		Name:     "smtp",
		Title:    "SMTP credential",
		defaults: typePolicy{RotationPeriod: 30 * day, AlertThreshold: 7 * day, RiskLevel: "medium"},
		paths:    pathSMTP,
		create:   generateSMTPVersion,
		set:      setSMTPPassword,
		test:     testSMTPLogin,
		undo:     undoSMTPPassword,
		plain:    smtpPlain,
		// A revoked password (rotate with revoke_previous) is destroyed:
		// version=N of it reads as revoked, without a password.
		onRevoke: destroySMTPPassword,
	}
}

func destroySMTPPassword(v *secretVersion) error {
	var m smtpMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return err
	}
	m.Password = ""
	var err error
	v.Material, err = json.Marshal(m)
	return err
}

func pathSMTP(b *backend, k *secretKind) []*framework.Path {
	fields := map[string]*framework.FieldSchema{
		"username": {Type: framework.TypeString,
			Description:  "Login name, for example admin@example.com. Required on create.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Username"}},
		"password": {Type: framework.TypeString,
			Description:  "Password. Left out on create, one is generated (config password_policy, or 44 random base62 characters). A changed password makes a new version.",
			DisplayAttrs: &framework.DisplayAttributes{Name: "Password", Sensitive: true}},
		"host": {Type: framework.TypeString,
			Description: "SMTP server host name or IP address. Required on create."},
		"port": {Type: framework.TypeInt,
			Description: fmt.Sprintf("SMTP server port, 1-65535 (default %d).", smtpDefaultPort)},
		"encryption": {Type: framework.TypeString,
			Description:   "Transport security: none, starttls or tls (default starttls).",
			AllowedValues: []interface{}{"none", "starttls", "tls"}},
		"webmail_url": {Type: framework.TypeString,
			Description: fmt.Sprintf("Optional webmail address (http or https URL, at most %d characters).", maxWebmailURLLen)},
	}
	for name, f := range smtpServerFields() {
		fields[name] = f
	}
	return []*framework.Path{
		secretPath(b, k, fields, writeSMTP, viewSMTP, "Create, read, update and delete an SMTP credential.", smtpHelp),
	}
}

// writeSMTP validates the request fully, then applies it: settings in place,
// and a new version when the username or password changes.
func writeSMTP(ctx context.Context, b *backend, req *logical.Request, d *framework.FieldData, e *secretEntry, cfg *engineConfig, now time.Time) error {
	creating := e.current() == nil
	settings := smtpSettings{Port: smtpDefaultPort, Encryption: smtpDefaultEncryption}
	var material smtpMaterial
	if !creating {
		if err := json.Unmarshal(e.Settings, &settings); err != nil {
			return fmt.Errorf("decoding smtp settings: %w", err)
		}
		if err := decodeMaterial(e.current(), &material); err != nil {
			return err
		}
	}
	next := material

	if v, ok := d.GetOk("host"); ok {
		settings.Host = strings.TrimSpace(v.(string))
	}
	if err := validateHost("host", settings.Host); err != nil {
		return err
	}
	if v, ok := d.GetOk("port"); ok {
		settings.Port = v.(int)
	}
	if err := validatePort("port", settings.Port); err != nil {
		return err
	}
	if v, ok := d.GetOk("encryption"); ok {
		settings.Encryption = strings.ToLower(strings.TrimSpace(v.(string)))
	}
	if err := validateOneOf("encryption", settings.Encryption, smtpEncryptions); err != nil {
		return err
	}
	if v, ok := d.GetOk("webmail_url"); ok {
		settings.WebmailURL = strings.TrimSpace(v.(string))
	}
	if err := validateWebmailURL(settings.WebmailURL); err != nil {
		return err
	}
	if err := b.applyServerFields(ctx, d, &settings); err != nil {
		return err
	}
	if v, ok := d.GetOk("username"); ok {
		next.Username = strings.TrimSpace(v.(string))
	}
	if err := validateUsername(next.Username); err != nil {
		return err
	}
	if v, ok := d.GetOk("password"); ok {
		pw := v.(string)
		if pw == "" || len(pw) > maxPasswordLen {
			return badInput("password must be 1 to %d characters; leave it out to have one generated", maxPasswordLen)
		}
		// The credential decides whether this is a change: writing back the
		// password in force (generated or not) is none.
		if pw != next.Password {
			next.Password, next.Generated = pw, false
		}
	}

	if creating && next.Password == "" {
		pw, err := b.generatePassword(ctx, cfg)
		if err != nil {
			return err
		}
		next.Password, next.Generated = pw, true
	}

	raw, err := json.Marshal(settings)
	if err != nil {
		return err
	}
	e.Settings = raw
	if !creating && next == material {
		return nil // settings only: no new version
	}
	return e.writeVersion(next, req, now, e.kindOf(b), cfg, creating || next.Password != material.Password, "credential changed by write")
}

// generateSMTPVersion makes a rotated version: same username, new password.
func generateSMTPVersion(ctx context.Context, b *backend, e *secretEntry, cfg *engineConfig, _ time.Time, _ map[string]interface{}) (interface{}, error) {
	var cur smtpMaterial
	if err := decodeMaterial(e.current(), &cur); err != nil {
		return nil, err
	}
	pw, err := b.generatePassword(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return smtpMaterial{Username: cur.Username, Password: pw, Generated: true}, nil
}

// generatePassword uses the configured Vault password policy, or the built-in
// generator over Vault's (entropy-augmented) random source.
func (b *backend) generatePassword(ctx context.Context, cfg *engineConfig) (string, error) {
	if cfg.PasswordPolicy != "" {
		pw, err := b.System().GeneratePasswordFromPolicy(ctx, cfg.PasswordPolicy)
		if err != nil {
			return "", fmt.Errorf("generating a password with policy %q: %w", cfg.PasswordPolicy, err)
		}
		return pw, nil
	}
	return base62.RandomWithReader(generatedPasswordLength, b.GetRandomReader())
}

func viewSMTP(e *secretEntry, v *secretVersion, withSecrets bool) (map[string]interface{}, error) {
	var s smtpSettings
	if err := json.Unmarshal(e.Settings, &s); err != nil {
		return nil, fmt.Errorf("decoding smtp settings: %w", err)
	}
	var m smtpMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return nil, err
	}
	out := map[string]interface{}{
		"username":           m.Username,
		"host":               s.Host,
		"port":               s.Port,
		"encryption":         s.Encryption,
		"webmail_url":        s.WebmailURL,
		"password_generated": m.Generated,
		"driver":             s.Driver,
		"api_url":            s.APIURL,
		"account":            s.Account,
		"verify":             s.verifies(),
		"ca_cert":            s.CACert,
	}
	if s.Driver == "" {
		out["driver"] = "none"
	}
	if withSecrets && v.Status != statusRevoked {
		out["password"] = m.Password
	}
	return out, nil
}

func validateUsername(u string) error {
	if u == "" {
		return badInput("username is required")
	}
	if len(u) > maxUsernameLen {
		return badInput("username is too long: at most %d characters", maxUsernameLen)
	}
	for _, r := range u {
		if unicode.IsControl(r) || unicode.IsSpace(r) {
			return badInput("username must not contain spaces or control characters")
		}
	}
	return nil
}

func validateWebmailURL(raw string) error {
	if raw == "" {
		return nil
	}
	if len(raw) > maxWebmailURLLen {
		return badInput("webmail_url is too long: at most %d characters", maxWebmailURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return badInput("invalid webmail_url %s: must be an absolute http or https URL", quoteShort(raw))
	}
	return nil
}

// kindOf returns the descriptor of the entry's type.
func (e *secretEntry) kindOf(b *backend) *secretKind { return b.kinds[e.Kind] }

const smtpHelp = `
An SMTP credential: username and password (versioned) plus the server
settings host, port, encryption and webmail_url (shared by all versions).

  vault write penguinmails/smtp/tenant-1/mail-1 username=admin@example.com \
      password=s3cret host=smtp.example.com port=587 encryption=starttls
  vault read penguinmails/smtp/tenant-1/mail-1
  vault read penguinmails/smtp/tenant-1/mail-1 version=1
  vault write -f penguinmails/smtp/tenant-1/mail-1/rotate reason="quarterly review"

Leave password out on create to have one generated. Writing a different
username or password makes a new version; writing only settings does not.
A read returns the version's fields and the rotation metadata: last_rotated,
next_rotation, rotation_period, rotation_status (healthy, due_soon, overdue).
`
