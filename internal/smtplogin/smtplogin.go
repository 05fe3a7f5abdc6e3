// Package smtplogin proves a mailbox password by logging in to an SMTP
// server with it: connect (implicit TLS, STARTTLS or, on loopback only,
// clear text), EHLO, AUTH PLAIN (or LOGIN when PLAIN is not offered), QUIT.
// Nothing is sent.
//
// Errors are *Error: they name the stage that failed (options, connect,
// tls, hello, starttls, auth) and the server's reply code, and never carry
// the password, even when a server quotes it back.
package smtplogin

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// The encryptions of Options.Encryption.
const (
	// EncryptionNone is clear text, accepted only for a loopback host.
	EncryptionNone = "none"
	// EncryptionSTARTTLS upgrades a clear connection (port 587) and
	// requires the server to offer STARTTLS.
	EncryptionSTARTTLS = "starttls"
	// EncryptionTLS is TLS from the first byte (port 465).
	EncryptionTLS = "tls"
)

// The stages of Error.Stage.
const (
	StageOptions  = "options"
	StageConnect  = "connect"
	StageTLS      = "tls"
	StageHello    = "hello"
	StageStartTLS = "starttls"
	StageAuth     = "auth"
)

// ErrNoStartTLS is wrapped when Encryption is starttls and the server does
// not offer STARTTLS: Login never falls back to clear text.
var ErrNoStartTLS = errors.New("the server does not offer STARTTLS; refusing to go on in clear text")

// ErrClearText is wrapped when the password would cross the network
// unencrypted: Encryption none with a host that is not loopback.
var ErrClearText = errors.New("refusing to send the password over an unencrypted connection to a host that is not loopback; use starttls or tls")

// Options say where and as whom to log in.
type Options struct {
	Host string
	Port int
	// Encryption is none, starttls or tls.
	Encryption string
	Username   string
	Password   string
	// RootCAs verify the server's certificate; nil means the system's.
	RootCAs *x509.CertPool
	// ServerName is the name the certificate must carry; "" means Host.
	ServerName string
}

// Error is a failed login.
type Error struct {
	// Addr is host:port.
	Addr string
	// Stage is where it failed: one of the Stage constants.
	Stage string
	// Code is the server's SMTP reply code (535 for refused credentials),
	// 0 when the server gave none.
	Code int
	// Err is the cause; an SMTP reply is an *smtp.SMTPError whose message
	// has the password removed.
	Err error
}

func (e *Error) Error() string {
	var detail string
	var se *smtp.SMTPError
	if errors.As(e.Err, &se) {
		detail = replyText(se)
	} else if e.Err != nil {
		detail = e.Err.Error()
	}
	if e.Addr == "" {
		return fmt.Sprintf("smtp login %s: %s", e.Stage, detail)
	}
	return fmt.Sprintf("smtp login %s (%s): %s", e.Stage, e.Addr, detail)
}

func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether trying later may succeed: a 4xx reply, a
// network failure or a timeout. Refused credentials (535), a certificate
// that does not verify or a refused option are not.
func (e *Error) Temporary() bool {
	if e.Code != 0 {
		return e.Code/100 == 4
	}
	if e.Stage == StageOptions || errors.Is(e.Err, ErrNoStartTLS) || isCertError(e.Err) {
		return false
	}
	var ne net.Error
	return errors.Is(e.Err, context.DeadlineExceeded) || errors.As(e.Err, &ne)
}

// replyText is "535 5.7.8 message".
func replyText(se *smtp.SMTPError) string {
	s := strconv.Itoa(se.Code)
	if se.EnhancedCode != smtp.NoEnhancedCode && se.EnhancedCode != (smtp.EnhancedCode{}) {
		s += fmt.Sprintf(" %d.%d.%d", se.EnhancedCode[0], se.EnhancedCode[1], se.EnhancedCode[2])
	}
	if se.Message != "" {
		s += " " + se.Message
	}
	return s
}

// Login connects to o.Host:o.Port and authenticates with o.Username and
// o.Password, then quits. ctx bounds the whole exchange, including every
// read and write on the connection.
func Login(ctx context.Context, o Options) error {
	o, err := o.checked()
	if err != nil {
		return err
	}
	l := &login{ctx: ctx, o: o, addr: net.JoinHostPort(o.Host, strconv.Itoa(o.Port))}
	if err := ctx.Err(); err != nil {
		return l.fail(StageConnect, err)
	}
	c, err := l.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := l.authenticate(c); err != nil {
		return err
	}
	// The password is proven once AUTH succeeded; a failed QUIT changes
	// nothing of that, so it is not an error.
	_ = c.Quit()
	return nil
}

// checked validates o and fills ServerName.
func (o Options) checked() (Options, error) {
	fail := func(msg string) (Options, error) {
		return o, &Error{Stage: StageOptions, Err: errors.New(msg)}
	}
	switch {
	case o.Host == "":
		return fail("host is required")
	case o.Port < 1 || o.Port > 65535:
		return fail("port must be 1..65535")
	case o.Username == "":
		return fail("username is required")
	case o.Password == "":
		return fail("password is required")
	}
	switch o.Encryption {
	case EncryptionSTARTTLS, EncryptionTLS:
	case EncryptionNone:
		if !provider.IsLoopback(o.Host) {
			return o, &Error{Stage: StageOptions, Err: ErrClearText}
		}
	default:
		return fail("encryption must be none, starttls or tls")
	}
	if o.ServerName == "" {
		o.ServerName = o.Host
	}
	return o, nil
}

// login is one login attempt.
type login struct {
	ctx  context.Context
	o    Options
	addr string
	conn *deadlineConn
}

func (l *login) tlsConfig() *tls.Config {
	return &tls.Config{ServerName: l.o.ServerName, RootCAs: l.o.RootCAs, MinVersion: tls.VersionTLS12}
}

// connect dials, sets up TLS as o.Encryption says and runs EHLO, so that
// the client it returns knows the server's extensions.
func (l *login) connect(ctx context.Context) (*smtp.Client, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", l.addr)
	if err != nil {
		return nil, l.fail(StageConnect, err)
	}
	l.conn = newDeadlineConn(ctx, raw)
	var c *smtp.Client
	switch l.o.Encryption {
	case EncryptionTLS:
		tc := tls.Client(l.conn, l.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			tc.Close()
			return nil, l.fail(StageTLS, err)
		}
		c = smtp.NewClient(tc)
	case EncryptionSTARTTLS:
		if c, err = l.startTLS(ctx); err != nil {
			return nil, err
		}
	default:
		c = smtp.NewClient(l.conn)
	}
	if err := c.Hello("localhost"); err != nil {
		c.Close()
		stage := StageHello
		if state, _ := c.TLSConnectionState(); l.o.Encryption == EncryptionSTARTTLS && !state.HandshakeComplete {
			// go-smtp shakes hands on the first exchange after STARTTLS.
			stage = StageStartTLS
		}
		return nil, l.fail(stage, err)
	}
	return c, nil
}

// startTLS reads the greeting, runs EHLO and STARTTLS; a server that does
// not offer STARTTLS is ErrNoStartTLS.
func (l *login) startTLS(ctx context.Context) (*smtp.Client, error) {
	c, err := smtp.NewClientStartTLS(l.conn, l.tlsConfig())
	if err == nil {
		return c, nil
	}
	l.conn.Close()
	var se *smtp.SMTPError
	switch {
	case errors.As(err, &se) && l.conn.lastCommand() == "STARTTLS":
		return nil, l.fail(StageStartTLS, err)
	case errors.As(err, &se):
		return nil, l.fail(StageHello, err)
	case strings.Contains(err.Error(), "STARTTLS"):
		// go-smtp's own error when EHLO lists no STARTTLS.
		return nil, l.fail(StageStartTLS, ErrNoStartTLS)
	default:
		return nil, l.fail(StageHello, err)
	}
}

// authenticate runs AUTH PLAIN, or LOGIN when the server offers only that.
func (l *login) authenticate(c *smtp.Client) error {
	if _, encrypted := c.TLSConnectionState(); !encrypted && !provider.IsLoopback(l.o.Host) {
		return l.fail(StageAuth, ErrClearText)
	}
	var mech sasl.Client
	switch {
	case c.SupportsAuth("PLAIN"):
		mech = sasl.NewPlainClient("", l.o.Username, l.o.Password)
	case c.SupportsAuth("LOGIN"):
		mech = sasl.NewLoginClient(l.o.Username, l.o.Password)
	default:
		_, offered := c.Extension("AUTH")
		return l.fail(StageAuth, fmt.Errorf("the server offers neither AUTH PLAIN nor LOGIN (AUTH %q)", offered))
	}
	if err := c.Auth(mech); err != nil {
		return l.fail(StageAuth, err)
	}
	return nil
}

// fail is the *Error of stage, with the password removed from err.
func (l *login) fail(stage string, err error) error {
	e := &Error{Addr: l.addr, Stage: stage, Err: l.scrub(ctxErr(l.ctx, err))}
	var se *smtp.SMTPError
	if errors.As(e.Err, &se) {
		e.Code = se.Code
	}
	return e
}

// scrub removes the password, and the base64 forms AUTH PLAIN and LOGIN
// send it in, from err: a server may quote what it refused.
func (l *login) scrub(err error) error {
	secrets := []string{
		l.o.Password,
		base64.StdEncoding.EncodeToString([]byte(l.o.Password)),
		base64.StdEncoding.EncodeToString([]byte("\x00" + l.o.Username + "\x00" + l.o.Password)),
	}
	clean := func(s string) (string, bool) {
		changed := false
		for _, sec := range secrets {
			if strings.Contains(s, sec) {
				s, changed = strings.ReplaceAll(s, sec, "[redacted]"), true
			}
		}
		return s, changed
	}
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		msg, _ := clean(se.Message)
		return &smtp.SMTPError{Code: se.Code, EnhancedCode: se.EnhancedCode, Message: msg}
	}
	if msg, changed := clean(err.Error()); changed {
		return errors.New(msg)
	}
	return err
}

// ctxErr is the context's error when it ended, else err. The connection's
// deadline is the context's, and may fire a moment before the context's
// own timer: an i/o timeout at or past the deadline is the deadline.
func ctxErr(ctx context.Context, err error) error {
	cause := ctx.Err()
	if dl, ok := ctx.Deadline(); cause == nil && ok && !time.Now().Before(dl) && errors.Is(err, os.ErrDeadlineExceeded) {
		cause = context.DeadlineExceeded
	}
	if cause == nil || errors.Is(err, cause) {
		return err
	}
	return fmt.Errorf("%w (%v)", cause, err)
}

func isCertError(err error) bool {
	var (
		ve *tls.CertificateVerificationError
		ua x509.UnknownAuthorityError
		he x509.HostnameError
		ci x509.CertificateInvalidError
	)
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) || errors.As(err, &ci)
}

// deadlineConn holds every deadline that go-smtp sets (it sets its own
// per command, and clears them after) to the context's deadline, and
// expires them all when the context ends.
type deadlineConn struct {
	net.Conn
	ctx  context.Context
	mu   sync.Mutex
	last string
	stop func() bool
}

func newDeadlineConn(ctx context.Context, c net.Conn) *deadlineConn {
	d := &deadlineConn{Conn: c, ctx: ctx}
	d.stop = context.AfterFunc(ctx, func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		_ = d.Conn.SetDeadline(time.Unix(1, 0))
	})
	_ = d.SetDeadline(time.Time{})
	return d
}

// clamp is t bounded by the context: its deadline, or the past once it
// ended.
func (d *deadlineConn) clamp(t time.Time) time.Time {
	if d.ctx.Err() != nil {
		return time.Unix(1, 0)
	}
	if dl, ok := d.ctx.Deadline(); ok && (t.IsZero() || dl.Before(t)) {
		return dl
	}
	return t
}

func (d *deadlineConn) SetDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Conn.SetDeadline(d.clamp(t))
}

func (d *deadlineConn) SetReadDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Conn.SetReadDeadline(d.clamp(t))
}

func (d *deadlineConn) SetWriteDeadline(t time.Time) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.Conn.SetWriteDeadline(d.clamp(t))
}

// Write remembers the verb of the last command line written, to tell a
// refused STARTTLS from a refused EHLO (only meaningful in clear text; it
// keeps at most the first word, never an argument).
func (d *deadlineConn) Write(b []byte) (int, error) {
	verb, _, _ := strings.Cut(string(b[:min(len(b), 16)]), " ")
	d.mu.Lock()
	d.last = strings.ToUpper(strings.TrimRight(verb, "\r\n"))
	d.mu.Unlock()
	return d.Conn.Write(b)
}

func (d *deadlineConn) lastCommand() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.last
}

func (d *deadlineConn) Close() error {
	d.stop()
	return d.Conn.Close()
}
