package penguinmails

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailu/mailufake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/smtplogin/smtpfake"
)

// mailStack is a Mailu admin API and a real SMTP server (go-smtp) that
// checks logins against the same mailboxes, as Mailu's own front does.
type mailStack struct {
	mailu *mailufake.Server
	smtp  *smtpfake.Server
}

func newMailStack(t *testing.T, mode smtpfake.Mode) *mailStack {
	t.Helper()
	m := &mailStack{mailu: mailufake.New()}
	t.Cleanup(m.mailu.Close)
	srv, err := smtpfake.New(mode, m.mailu.Check)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	m.smtp = srv
	return m
}

// writeMailuSecret stores smtp/t1/mail-1 with driver=mailu against the
// stack, with the mailbox's current password.
func (m *mailStack) writeMailuSecret(env *testEnv, encryption string, extra map[string]interface{}) {
	env.t.Helper()
	m.mailu.AddUser("admin@example.com", "old-password-1")
	env.ok(logical.UpdateOperation, "config/providers/mailu-1", map[string]interface{}{"provider": "mailu", "api_token": m.mailu.Token(),
		"base_url": m.mailu.URL()})
	host, port := m.smtp.Addr()
	data := map[string]interface{}{
		"username": "admin@example.com", "password": "old-password-1", "host": host, "port": port,
		"encryption": encryption, "driver": "mailu", "api_url": m.mailu.URL(), "account": "mailu-1",
		"ca_cert": string(m.smtp.CAPEM()),
	}
	for k, v := range extra {
		data[k] = v
	}
	env.ok(logical.CreateOperation, "smtp/t1/mail-1", data)
}

// With driver=mailu a rotation sets the new password through Mailu's API,
// logs in with it over SMTP AUTH (STARTTLS or implicit TLS, trusting
// ca_cert), and only then makes it current.
func TestSMTPDriver_MailuRotationSetsAndVerifies(t *testing.T) {
	for _, tc := range []struct {
		mode       smtpfake.Mode
		encryption string
	}{{smtpfake.STARTTLS, "starttls"}, {smtpfake.ImplicitTLS, "tls"}} {
		t.Run(tc.encryption, func(t *testing.T) {
			env := newTestEnv(t)
			m := newMailStack(t, tc.mode)
			m.writeMailuSecret(env, tc.encryption, nil)
			out := env.ok(logical.UpdateOperation, "smtp/t1/mail-1/rotate", nil)
			if out["version"] != 2 {
				t.Fatalf("rotate: %v", out)
			}
			pw := env.ok(logical.ReadOperation, "smtp/t1/mail-1", nil)["password"].(string)
			if pw == "old-password-1" || m.mailu.Password("admin@example.com") != pw {
				t.Fatalf("Mailu's password is not the rotated one")
			}
			if logins := m.smtp.Logins(); len(logins) != 1 || logins[0] != "admin@example.com" {
				t.Fatalf("SMTP logins: %v, want one by admin@example.com", logins)
			}
			set := m.mailu.Requests("set")
			if len(set) != 1 || set[0].Method != "PATCH" || set[0].Path != "/api/v1/user/admin@example.com" ||
				set[0].Header.Get("Authorization") != "Bearer "+m.mailu.Token() || !strings.Contains(string(set[0].Body), `"raw_password"`) {
				t.Fatalf("Mailu requests: %+v", set)
			}
		})
	}
}

// A new password the SMTP server refuses fails the rotation at the test
// step: the current version stays, and Mailu gets the current password
// back.
func TestSMTPDriver_RefusedLoginFailsAndRestores(t *testing.T) {
	env := newTestEnv(t)
	m := newMailStack(t, smtpfake.STARTTLS)
	m.writeMailuSecret(env, "starttls", nil)
	// The SMTP server checks another store than the one Mailu's API sets,
	// so it refuses the new password (535).
	other, err := smtpfake.New(smtpfake.STARTTLS, func(u, p string) bool { return p == "old-password-1" })
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	host, port := other.Addr()
	env.ok(logical.UpdateOperation, "smtp/t1/mail-1", map[string]interface{}{"host": host, "port": port, "ca_cert": string(other.CAPEM())})

	resp, err := env.do(logical.UpdateOperation, "smtp/t1/mail-1/rotate", nil)
	if code := statusOf(logical.UpdateOperation, resp, err); code != 502 || !strings.Contains(err.Error(), "test step") || !strings.Contains(err.Error(), "535") {
		t.Fatalf("rotate with a refused login: %d %v", code, err)
	}
	read := env.ok(logical.ReadOperation, "smtp/t1/mail-1", nil)
	if read["current_version"] != 1 || read["password"] != "old-password-1" {
		t.Fatalf("current version after the failed rotation: %v", read["current_version"])
	}
	if got := m.mailu.Password("admin@example.com"); got != "old-password-1" {
		t.Fatalf("Mailu's password was not restored")
	}
	if strings.Contains(err.Error(), m.mailu.Token()) {
		t.Fatal("the error carries the Mailu token")
	}
}

// driver=none keeps today's behaviour: rotation changes Vault's copy only,
// with no login, in one write.
func TestSMTPDriver_NoneRotatesInOneWrite(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.CreateOperation, "smtp/t1/mail-1", map[string]interface{}{"username": "a@example.com", "host": "smtp.example.com"})
	out := env.ok(logical.UpdateOperation, "smtp/t1/mail-1/rotate", nil)
	if out["version"] != 2 {
		t.Fatalf("rotate: %v", out)
	}
	read := env.ok(logical.ReadOperation, "smtp/t1/mail-1", nil)
	if read["driver"] != "none" || read["verify"] != false {
		t.Fatalf("driver %v verify %v", read["driver"], read["verify"])
	}
}

// Bad driver settings are refused with a 400 naming the field, and nothing
// is stored.
func TestSMTPDriver_BadSettings(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config/providers/sg", map[string]interface{}{"provider": "sendgrid", "api_key": "SG.x"})
	env.ok(logical.UpdateOperation, "config/providers/mailu-1", map[string]interface{}{"provider": "mailu", "api_token": "t",
		"base_url": "https://mail.example.com/api"})
	base := map[string]interface{}{"username": "a@example.com", "host": "smtp.example.com"}
	for _, tc := range []struct {
		data map[string]interface{}
		want string
	}{
		{map[string]interface{}{"driver": "postfix"}, "driver"},
		{map[string]interface{}{"driver": "mailu", "account": "sg", "api_url": "https://mail.example.com/api"}, "account"},
		{map[string]interface{}{"driver": "mailu", "api_url": "https://mail.example.com/api"}, "account is required"},
		{map[string]interface{}{"driver": "mailu", "api_url": "https://evil.example.com/api", "account": "mailu-1"}, "api_url must be empty or the base_url"},
		{map[string]interface{}{"verify": true}, "verify=true needs a driver"},
		{map[string]interface{}{"api_url": "https://mail.example.com/api"}, "driver=mailu only"},
		{map[string]interface{}{"ca_cert": "not a certificate"}, "ca_cert"},
	} {
		data := map[string]interface{}{}
		for k, v := range base {
			data[k] = v
		}
		for k, v := range tc.data {
			data[k] = v
		}
		msg := env.badRequest(logical.CreateOperation, "smtp/t1/bad", data)
		if !strings.Contains(msg, tc.want) {
			t.Errorf("%v: message %q does not name %q", tc.data, msg, tc.want)
		}
	}
	if resp, _ := env.do(logical.ReadOperation, "smtp/t1/bad", nil); resp != nil {
		t.Fatalf("a refused write stored the secret: %v", resp.Data)
	}
}
