package smtplogin_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailu"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailu/mailufake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/smtplogin"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/smtplogin/smtpfake"
)

const (
	user     = "alice@example.com"
	password = "s3cret-Mailbox-Passw0rd"
	wrong    = "wrong-Passw0rd-guess"
)

func only(u, p string) func(string, string) bool {
	return func(gotU, gotP string) bool { return gotU == u && gotP == p }
}

func start(t *testing.T, mode smtpfake.Mode, check func(string, string) bool, opts ...smtpfake.Option) *smtpfake.Server {
	t.Helper()
	f, err := smtpfake.New(mode, check, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

var encryptionOf = map[smtpfake.Mode]string{
	smtpfake.STARTTLS:    smtplogin.EncryptionSTARTTLS,
	smtpfake.ImplicitTLS: smtplogin.EncryptionTLS,
	smtpfake.Plain:       smtplogin.EncryptionNone,
}

func options(f *smtpfake.Server, mode smtpfake.Mode, pass string) smtplogin.Options {
	host, port := f.Addr()
	return smtplogin.Options{Host: host, Port: port, Encryption: encryptionOf[mode], Username: user, Password: pass, RootCAs: f.CAPool()}
}

func login(t *testing.T, o smtplogin.Options) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return smtplogin.Login(ctx, o)
}

// loginError asserts err is an *smtplogin.Error of stage that carries no
// form of the passwords tried.
func loginError(t *testing.T, err error, stage string) *smtplogin.Error {
	t.Helper()
	var le *smtplogin.Error
	if !errors.As(err, &le) {
		t.Fatalf("error %v (%T) is not an *smtplogin.Error", err, err)
	}
	if le.Stage != stage {
		t.Fatalf("stage %q, want %q: %v", le.Stage, stage, err)
	}
	for _, p := range []string{password, wrong} {
		for _, form := range []string{p, b64(p), b64("\x00" + user + "\x00" + p)} {
			if strings.Contains(err.Error(), form) {
				t.Fatalf("error carries the password: %v", err)
			}
			var se *smtp.SMTPError
			if errors.As(err, &se) && strings.Contains(se.Message, form) {
				t.Fatalf("wrapped reply carries the password: %q", se.Message)
			}
		}
	}
	return le
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

var modes = map[string]smtpfake.Mode{"starttls": smtpfake.STARTTLS, "tls": smtpfake.ImplicitTLS, "none on loopback": smtpfake.Plain}

func TestRightPasswordLogsInInEveryMode(t *testing.T) {
	for name, mode := range modes {
		for _, mech := range []string{"PLAIN", "LOGIN"} {
			t.Run(name+"/"+mech, func(t *testing.T) {
				f := start(t, mode, only(user, password), smtpfake.Mechanisms(mech))
				if err := login(t, options(f, mode, password)); err != nil {
					t.Fatal(err)
				}
				if got := f.Logins(); !reflect.DeepEqual(got, []string{user}) {
					t.Fatalf("Logins = %v", got)
				}
			})
		}
	}
}

func TestWrongPasswordFailsAtAuthWith535(t *testing.T) {
	for name, mode := range modes {
		for _, mech := range []string{"PLAIN", "LOGIN"} {
			t.Run(name+"/"+mech, func(t *testing.T) {
				f := start(t, mode, only(user, password), smtpfake.Mechanisms(mech))
				err := login(t, options(f, mode, wrong))
				le := loginError(t, err, smtplogin.StageAuth)
				if le.Code != 535 || le.Temporary() || !strings.Contains(err.Error(), "auth") || !strings.Contains(err.Error(), "535 5.7.8") {
					t.Fatalf("code %d temporary %v: %v", le.Code, le.Temporary(), err)
				}
				if n := len(f.Logins()); n != 0 {
					t.Fatalf("%d logins", n)
				}
			})
		}
	}
}

func TestRepliesQuotingThePasswordAreScrubbed(t *testing.T) {
	for _, mech := range []string{"PLAIN", "LOGIN"} {
		f := start(t, smtpfake.STARTTLS, only(user, password), smtpfake.Mechanisms(mech), smtpfake.QuoteCredentials())
		err := login(t, options(f, smtpfake.STARTTLS, wrong))
		le := loginError(t, err, smtplogin.StageAuth)
		if le.Code != 535 || !strings.Contains(err.Error(), "[redacted]") {
			t.Fatalf("%s: %v", mech, err)
		}
	}
}

func TestStartTLSIsRequiredWhenAsked(t *testing.T) {
	// Plain offers AUTH in clear text but no STARTTLS: Login must not log
	// in anyway.
	f := start(t, smtpfake.Plain, only(user, password))
	o := options(f, smtpfake.STARTTLS, password)
	err := login(t, o)
	loginError(t, err, smtplogin.StageStartTLS)
	if !errors.Is(err, smtplogin.ErrNoStartTLS) {
		t.Fatalf("err = %v, want ErrNoStartTLS", err)
	}
	if n := len(f.Logins()); n != 0 {
		t.Fatalf("logged in %d times without STARTTLS", n)
	}
	// Implicit TLS against a clear-text server fails too.
	o.Encryption = smtplogin.EncryptionTLS
	loginError(t, login(t, o), smtplogin.StageTLS)
}

func TestUntrustedCertificateIsRefused(t *testing.T) {
	for _, mode := range []smtpfake.Mode{smtpfake.STARTTLS, smtpfake.ImplicitTLS} {
		f := start(t, mode, only(user, password))
		o := options(f, mode, password)
		o.RootCAs = nil // the system's roots do not know the test certificate
		stage := map[smtpfake.Mode]string{smtpfake.STARTTLS: smtplogin.StageStartTLS, smtpfake.ImplicitTLS: smtplogin.StageTLS}[mode]
		le := loginError(t, login(t, o), stage)
		if le.Temporary() {
			t.Fatalf("a certificate error is temporary: %v", le)
		}
		o.RootCAs = f.CAPool()
		o.ServerName = "mail.example.com" // not in the certificate
		loginError(t, login(t, o), stage)
		if n := len(f.Logins()); n != 0 {
			t.Fatalf("%d logins over an unverified connection", n)
		}
	}
}

func TestCAPEMAndServerName(t *testing.T) {
	f := start(t, smtpfake.ImplicitTLS, only(user, password))
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(f.CAPEM()) {
		t.Fatal("CAPEM is not a PEM certificate")
	}
	o := options(f, smtpfake.ImplicitTLS, password)
	o.RootCAs, o.ServerName = pool, "localhost"
	if err := login(t, o); err != nil {
		t.Fatal(err)
	}
}

func TestContextDeadlineAgainstASilentServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c // held open, never answered
		}
	}()
	defer func() {
		ln.Close()
		for c := range accepted {
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	for _, enc := range []string{smtplogin.EncryptionSTARTTLS, smtplogin.EncryptionTLS, smtplogin.EncryptionNone} {
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		begin := time.Now()
		err := smtplogin.Login(ctx, smtplogin.Options{Host: "127.0.0.1", Port: port, Encryption: enc, Username: user, Password: password})
		cancel()
		if el := time.Since(begin); el > 5*time.Second {
			t.Fatalf("%s: returned after %s", enc, el)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: err = %v", enc, err)
		}
		var le *smtplogin.Error
		if !errors.As(err, &le) || !le.Temporary() {
			t.Fatalf("%s: %v is not a temporary *Error", enc, err)
		}
	}
}

func TestCancelledContextStopsALogin(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	got := make(chan net.Conn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			got <- c
		}
	}()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- smtplogin.Login(ctx, smtplogin.Options{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port,
			Encryption: smtplogin.EncryptionSTARTTLS, Username: user, Password: password})
	}()
	c := <-got // the client is connected and waits for a greeting
	defer c.Close()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Login did not return after cancel")
	}
}

func TestOptionsAreChecked(t *testing.T) {
	good := smtplogin.Options{Host: "127.0.0.1", Port: 25, Encryption: "tls", Username: user, Password: password}
	cases := map[string]func(o *smtplogin.Options){
		"host is required":          func(o *smtplogin.Options) { o.Host = "" },
		"port must be 1..65535":     func(o *smtplogin.Options) { o.Port = 0 },
		"username is required":      func(o *smtplogin.Options) { o.Username = "" },
		"password is required":      func(o *smtplogin.Options) { o.Password = "" },
		"encryption must be none":   func(o *smtplogin.Options) { o.Encryption = "ssl" },
		"unencrypted connection to": func(o *smtplogin.Options) { o.Encryption, o.Host = "none", "192.0.2.1" },
	}
	for want, change := range cases {
		o := good
		change(&o)
		begin := time.Now()
		err := smtplogin.Login(context.Background(), o)
		loginError(t, err, smtplogin.StageOptions)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
		if time.Since(begin) > time.Second {
			t.Errorf("%q took %s: it dialled", want, time.Since(begin))
		}
	}
	o := good
	o.Encryption, o.Host = "none", "mail.example.com"
	if err := smtplogin.Login(context.Background(), o); !errors.Is(err, smtplogin.ErrClearText) {
		t.Fatalf("clear text off loopback: %v", err)
	}
}

// TestPasswordSetThroughMailuIsWhatSMTPAccepts wires the Mailu driver,
// its fake and the SMTP fake the way a rotation uses them: set the new
// password through Mailu's API, then prove it with an SMTP login.
func TestPasswordSetThroughMailuIsWhatSMTPAccepts(t *testing.T) {
	m := mailufake.New()
	defer m.Close()
	m.AddUser(user, password)
	f := start(t, smtpfake.STARTTLS, m.Check)
	if err := login(t, options(f, smtpfake.STARTTLS, password)); err != nil {
		t.Fatalf("before: %v", err)
	}
	drv, err := mailu.New(m.URL(), m.Token(), nil)
	if err != nil {
		t.Fatal(err)
	}
	const next = "n3xt-Mailbox-Passw0rd"
	if err := drv.SetPassword(context.Background(), user, next); err != nil {
		t.Fatal(err)
	}
	if err := login(t, options(f, smtpfake.STARTTLS, next)); err != nil {
		t.Fatalf("new password: %v", err)
	}
	err = login(t, options(f, smtpfake.STARTTLS, password))
	if le := loginError(t, err, smtplogin.StageAuth); le.Code != 535 {
		t.Fatalf("old password: %v", err)
	}
	if got := f.Logins(); !reflect.DeepEqual(got, []string{user, user}) {
		t.Fatalf("Logins = %v", got)
	}
}
