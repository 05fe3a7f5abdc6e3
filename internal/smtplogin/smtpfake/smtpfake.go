// Package smtpfake is a real SMTP server (github.com/emersion/go-smtp) on
// 127.0.0.1 for tests of SMTP logins: AUTH PLAIN and LOGIN checked by a
// function the test gives (a mailufake's Check, so that a password set
// through the Mailu API is what AUTH accepts), over STARTTLS, implicit TLS
// or clear text, with a certificate made at start for 127.0.0.1 and
// localhost.
package smtpfake

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mode is how clients reach the fake.
type Mode int

const (
	// STARTTLS listens in clear text, offers STARTTLS and AUTH only after
	// it (port 587 style).
	STARTTLS Mode = iota
	// ImplicitTLS speaks TLS from the first byte (port 465 style).
	ImplicitTLS
	// Plain offers no STARTTLS and allows AUTH in clear text: a server
	// that a starttls client must refuse, and a loopback server for
	// encryption none.
	Plain
)

// Option changes the fake.
type Option func(*Server)

// Mechanisms sets the AUTH mechanisms offered, of PLAIN and LOGIN
// (default both, PLAIN first).
func Mechanisms(m ...string) Option { return func(s *Server) { s.mechs = m } }

// QuoteCredentials makes refusals quote what the client sent (the
// password and its base64), as a careless server might: it proves that
// the client scrubs server replies.
func QuoteCredentials() Option { return func(s *Server) { s.quote = true } }

// Server is the running fake.
type Server struct {
	check func(username, password string) bool
	mechs []string
	quote bool

	srv   *smtp.Server
	ln    net.Listener
	pool  *x509.CertPool
	caPEM []byte

	mu     sync.Mutex
	logins []string
}

// New starts the fake in mode; check decides whether a username and
// password may log in.
func New(mode Mode, check func(username, password string) bool, opts ...Option) (*Server, error) {
	s := &Server{check: check, mechs: []string{sasl.Plain, sasl.Login}}
	for _, o := range opts {
		o(s)
	}
	cert, err := s.makeCert()
	if err != nil {
		return nil, err
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.srv = smtp.NewServer(smtp.BackendFunc(s.newSession))
	s.srv.Domain = "localhost"
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	switch mode {
	case STARTTLS:
		s.srv.TLSConfig = tlsConf
	case ImplicitTLS:
		s.srv.TLSConfig = tlsConf
		ln = tls.NewListener(ln, tlsConf)
	case Plain:
		s.srv.AllowInsecureAuth = true
	default:
		ln.Close()
		return nil, fmt.Errorf("smtpfake: unknown mode %d", mode)
	}
	s.ln = ln
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// makeCert makes a self-signed ECDSA certificate for 127.0.0.1 and
// localhost, which is its own CA.
func (s *Server) makeCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "smtpfake test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	s.pool = x509.NewCertPool()
	s.pool.AddCert(leaf)
	s.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// CAPool trusts the fake's certificate.
func (s *Server) CAPool() *x509.CertPool { return s.pool }

// CAPEM is the fake's certificate in PEM.
func (s *Server) CAPEM() []byte { return append([]byte(nil), s.caPEM...) }

// Addr is the host (127.0.0.1) and port the fake listens on.
func (s *Server) Addr() (host string, port int) {
	a := s.ln.Addr().(*net.TCPAddr)
	return a.IP.String(), a.Port
}

// Close stops the fake and ends its connections.
func (s *Server) Close() { _ = s.srv.Close() }

// Logins are the usernames that logged in, oldest first.
func (s *Server) Logins() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.logins...)
}

// authenticate checks one username and password.
func (s *Server) authenticate(username, password string) error {
	if s.check != nil && s.check(username, password) {
		s.mu.Lock()
		s.logins = append(s.logins, username)
		s.mu.Unlock()
		return nil
	}
	if s.quote {
		plain := base64Of("\x00" + username + "\x00" + password)
		return &smtp.SMTPError{Code: 535, EnhancedCode: smtp.EnhancedCode{5, 7, 8},
			Message: fmt.Sprintf("Authentication failed for %s with password %s (%s, %s)", username, password, plain, base64Of(password))}
	}
	return smtp.ErrAuthFailed
}

func (s *Server) newSession(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }

// session accepts AUTH and nothing else worth noting: mail is refused
// before AUTH and discarded after.
type session struct {
	s      *Server
	authed bool
}

var _ smtp.AuthSession = (*session)(nil)

func (ss *session) AuthMechanisms() []string { return ss.s.mechs }

func (ss *session) Auth(mech string) (sasl.Server, error) {
	done := func(username, password string) error {
		if err := ss.s.authenticate(username, password); err != nil {
			return err
		}
		ss.authed = true
		return nil
	}
	offered := false
	for _, m := range ss.s.mechs {
		offered = offered || strings.EqualFold(m, mech)
	}
	switch {
	case offered && mech == sasl.Plain:
		return sasl.NewPlainServer(func(identity, username, password string) error {
			if identity != "" && identity != username {
				return smtp.ErrAuthFailed
			}
			return done(username, password)
		}), nil
	case offered && mech == sasl.Login:
		return &loginServer{done: done}, nil
	}
	return nil, smtp.ErrAuthUnknownMechanism
}

func (ss *session) Mail(from string, opts *smtp.MailOptions) error {
	if !ss.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (ss *session) Rcpt(to string, opts *smtp.RcptOptions) error {
	if !ss.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (ss *session) Data(r io.Reader) error {
	_, err := io.Copy(io.Discard, r)
	return err
}

func (ss *session) Reset()        {}
func (ss *session) Logout() error { return nil }

// loginServer is the server side of AUTH LOGIN (go-sasl has only the
// client): "Username:" and "Password:" challenges, the username possibly
// sent as the initial response.
type loginServer struct {
	done     func(username, password string) error
	username string
	step     int
}

func (l *loginServer) Next(response []byte) (challenge []byte, done bool, err error) {
	switch l.step {
	case 0:
		if len(response) == 0 {
			l.step = 1
			return []byte("Username:"), false, nil
		}
		l.username, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 1:
		l.username, l.step = string(response), 2
		return []byte("Password:"), false, nil
	case 2:
		l.step = 3
		return nil, true, l.done(l.username, string(response))
	}
	return nil, false, errors.New("unexpected response")
}

func base64Of(s string) string {
	return base64.StdEncoding.EncodeToString([]byte(s))
}
