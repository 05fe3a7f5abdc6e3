package penguinmails

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailu"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/smtplogin"
)

// SMTP rotations that reach the mail server. With driver=mailu the set step
// makes the new password the mailbox's password through Mailu's admin API;
// the test step then logs in with SMTP AUTH with it (verify). With
// driver=none a rotation changes only Vault's copy, as before: there is
// nothing to set, and a login with a password the server never got could
// only fail, so such secrets have no test either and rotate in one write.

// SMTP drivers: where a rotated password is set.
var smtpDrivers = []string{"none", "mailu"}

const maxCACertLen = 64 << 10

// smtpServerFields are the SMTP secret's fields for its mail server driver.
func smtpServerFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"driver": {Type: framework.TypeString, AllowedValues: []interface{}{"none", "mailu"},
			Description: "Where a rotation sets the new password: none (only Vault's copy changes; default) or mailu (Mailu's admin API)."},
		"api_url": {Type: framework.TypeString,
			Description: "driver=mailu: the Mailu API root; empty or the base_url of the account, to which alone its token is sent."},
		"account": {Type: framework.TypeString,
			Description: "driver=mailu: name of a config/providers entry with provider=mailu holding the API token."},
		"verify": {Type: framework.TypeBool,
			Description: "Test each rotated password with an SMTP AUTH login to host:port before it becomes current (default true with a driver; not allowed with driver=none)."},
		"ca_cert": {Type: framework.TypeString,
			Description: "PEM certificates to trust for the SMTP server's TLS and the Mailu API, in place of the system's (a private CA)."},
	}
}

// applyServerFields reads the driver fields into s and validates them with
// the rest of the settings.
func (b *backend) applyServerFields(ctx context.Context, d *framework.FieldData, s *smtpSettings) error {
	str := func(field string, dst *string) {
		if v, ok := d.GetOk(field); ok {
			*dst = strings.TrimSpace(v.(string))
		}
	}
	str("driver", &s.Driver)
	str("api_url", &s.APIURL)
	str("account", &s.Account)
	str("ca_cert", &s.CACert)
	if v, ok := d.GetOk("verify"); ok {
		on := v.(bool)
		s.Verify = &on
	}
	if s.Driver == "" {
		s.Driver = "none"
	}
	if err := validateOneOf("driver", s.Driver, smtpDrivers); err != nil {
		return err
	}
	if s.Driver == "none" {
		if s.APIURL != "" || s.Account != "" {
			return badInput("api_url and account apply to driver=mailu only")
		}
		if s.verifies() {
			return badInput("verify=true needs a driver: with driver=none a rotation changes only Vault's copy, which the server would refuse")
		}
	} else if err := b.checkMailuAccount(ctx, s.Account, s.APIURL); err != nil {
		return err
	}
	if s.CACert != "" {
		if len(s.CACert) > maxCACertLen {
			return badInput("ca_cert is too long: at most %d bytes", maxCACertLen)
		}
		if _, err := s.rootCAs(); err != nil {
			return err
		}
	}
	if s.verifies() && s.Encryption == "none" && !provider.IsLoopback(strings.Trim(s.Host, "[]")) {
		return badInput("verify with encryption=none would send the password in clear text to %s: use starttls or tls, or verify=false", quoteShort(s.Host))
	}
	return nil
}

// verifies reports whether rotations test the new password by logging in.
func (s *smtpSettings) verifies() bool {
	if s.Verify != nil {
		return *s.Verify
	}
	return s.Driver != "" && s.Driver != "none"
}

func (s *smtpSettings) rootCAs() (*x509.CertPool, error) {
	if s.CACert == "" {
		return nil, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(s.CACert)) {
		return nil, badInput("ca_cert holds no PEM certificate")
	}
	return pool, nil
}

// checkMailuAccount refuses an account that is missing or not a Mailu one,
// and an api_url other than the account's: the token is sent to that URL
// only.
func (b *backend) checkMailuAccount(ctx context.Context, name, apiURL string) error {
	if name == "" {
		return badInput("account is required with driver=mailu: the config/providers entry holding Mailu's API token")
	}
	if err := validateIdentifier("account", name); err != nil {
		return err
	}
	c, err := loadProviderCredential(ctx, b.storage, name)
	if err != nil {
		return err
	}
	if c == nil || c.Provider != "mailu" {
		return badInput("account %s is not a mailu credential in config/providers", quoteShort(name))
	}
	if apiURL != "" && apiURL != c.BaseURL {
		return badInput("api_url must be empty or the base_url of account %s (%s): its token is sent to that URL only", quoteShort(name), c.BaseURL)
	}
	return nil
}

// smtpPlain reports whether e's rotations touch no mail server.
func smtpPlain(e *secretEntry) bool {
	s, err := smtpSettingsOf(e)
	return err == nil && s.Driver != "mailu" && !s.verifies()
}

func smtpSettingsOf(e *secretEntry) (*smtpSettings, error) {
	var s smtpSettings
	if err := json.Unmarshal(e.Settings, &s); err != nil {
		return nil, fmt.Errorf("decoding smtp settings: %w", err)
	}
	return &s, nil
}

func setSMTPPassword(ctx context.Context, b *backend, e *secretEntry, p *secretVersion) error {
	return b.setMailboxPassword(ctx, e, p)
}

// undoSMTPPassword puts the current password back on the server: the
// pending one may have been set, in full or not at all.
func undoSMTPPassword(ctx context.Context, b *backend, e *secretEntry, _ *secretVersion) error {
	return b.setMailboxPassword(ctx, e, e.current())
}

func (b *backend) setMailboxPassword(ctx context.Context, e *secretEntry, v *secretVersion) error {
	s, err := smtpSettingsOf(e)
	if err != nil || s.Driver != "mailu" {
		return err
	}
	var m smtpMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return err
	}
	srv, err := b.mailServer(ctx, s)
	if err != nil {
		return err
	}
	return srv.SetPassword(ctx, m.Username, m.Password)
}

func (b *backend) mailServer(ctx context.Context, s *smtpSettings) (provider.MailServer, error) {
	c, err := loadProviderCredential(ctx, b.storage, s.Account)
	if err != nil {
		return nil, err
	}
	if c == nil || c.Provider != "mailu" {
		return nil, fmt.Errorf("account %q is not a mailu credential in config/providers", s.Account)
	}
	client, err := s.httpClient()
	if err != nil {
		return nil, err
	}
	return mailu.New(c.BaseURL, c.Secret, client)
}

func (s *smtpSettings) httpClient() (*http.Client, error) {
	pool, err := s.rootCAs()
	if err != nil || pool == nil {
		return nil, err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: t, Timeout: provider.DefaultTimeout}, nil
}

// testSMTPLogin logs in to the secret's server with the pending password.
func testSMTPLogin(ctx context.Context, _ *backend, e *secretEntry, p *secretVersion) error {
	s, err := smtpSettingsOf(e)
	if err != nil || !s.verifies() {
		return err
	}
	var m smtpMaterial
	if err := decodeMaterial(p, &m); err != nil {
		return err
	}
	pool, err := s.rootCAs()
	if err != nil {
		return err
	}
	return smtplogin.Login(ctx, smtplogin.Options{Host: strings.Trim(s.Host, "[]"), Port: s.Port, Encryption: s.Encryption,
		Username: m.Username, Password: m.Password, RootCAs: pool})
}
