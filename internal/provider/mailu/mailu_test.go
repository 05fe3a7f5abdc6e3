package mailu_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailu"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailu/mailufake"
)

const (
	oldPassword = "old-Password-1"
	newPassword = "n3w-Passw0rd-Secret"
)

func newServer(t *testing.T) (*mailu.Server, *mailufake.Server) {
	t.Helper()
	f := mailufake.New()
	t.Cleanup(f.Close)
	s, err := mailu.New(f.URL(), f.Token(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, f
}

func providerError(t *testing.T, err error) *provider.Error {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Provider != "mailu" || pe.Op != "set password" {
		t.Fatalf("error %v (%T) is not a mailu *provider.Error", err, err)
	}
	return pe
}

func TestNewNeedsBaseURLAndToken(t *testing.T) {
	cases := []struct{ base, token, prefix string }{
		{"", "tok", "base_url "},
		{"http://mail.example.com/api", "tok", "base_url "},
		{"https://mail.example.com/api?x=1", "tok", "base_url "},
		{"https://mail.example.com/api", "", "api_token "},
	}
	for _, c := range cases {
		if _, err := mailu.New(c.base, c.token, nil); err == nil || !strings.HasPrefix(err.Error(), c.prefix) {
			t.Errorf("New(%q, %q) = %v, want an error starting %q", c.base, c.token, err, c.prefix)
		}
	}
	if _, err := mailu.New("https://mail.example.com/api", "tok", nil); err != nil {
		t.Fatal(err)
	}
}

func TestSetPasswordSendsMailusUserUpdate(t *testing.T) {
	s, f := newServer(t)
	const email = "alice+sales@example.com"
	f.AddUser(email, oldPassword)
	if err := s.SetPassword(context.Background(), email, newPassword); err != nil {
		t.Fatal(err)
	}
	if got := f.Password(email); got != newPassword {
		t.Fatalf("password is %q", got)
	}
	if f.Check(email, oldPassword) || !f.Check(email, newPassword) {
		t.Fatal("Check does not follow the new password")
	}
	reqs := f.Requests("set")
	if len(reqs) != 1 {
		t.Fatalf("%d requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPatch || r.Path != "/api/v1/user/"+email {
		t.Fatalf("request %s %s", r.Method, r.Path)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+f.Token() {
		t.Fatalf("Authorization = %q", got)
	}
	if got := r.Header.Get("Content-Type"); got != "application/json" {
		t.Fatalf("Content-Type = %q", got)
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	if len(body) != 1 || body["raw_password"] != newPassword {
		t.Fatalf("body %s", r.Body)
	}
}

func TestUnknownUser(t *testing.T) {
	s, f := newServer(t)
	err := s.SetPassword(context.Background(), "nobody@example.com", newPassword)
	if !errors.Is(err, mailu.ErrNoSuchUser) {
		t.Fatalf("err = %v, want ErrNoSuchUser", err)
	}
	if pe := providerError(t, err); pe.Status != http.StatusNotFound || pe.Temporary() {
		t.Fatalf("status %d", pe.Status)
	}
	if !strings.Contains(err.Error(), "nobody@example.com") || strings.Contains(err.Error(), newPassword) {
		t.Fatalf("error %q should name the user and not the password", err)
	}
	if f.Password("nobody@example.com") != "" {
		t.Fatal("the fake made a user")
	}
}

func TestWrongToken(t *testing.T) {
	f := mailufake.New()
	defer f.Close()
	f.AddUser("alice@example.com", oldPassword)
	const wrong = "not-the-token"
	s, err := mailu.New(f.URL(), wrong, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = s.SetPassword(context.Background(), "alice@example.com", newPassword)
	if pe := providerError(t, err); pe.Status != http.StatusForbidden {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), newPassword) {
		t.Fatalf("error carries a secret: %v", err)
	}
	if f.Password("alice@example.com") != oldPassword {
		t.Fatal("password changed with a wrong token")
	}
}

func TestErrorsNeverQuoteThePasswordOrToken(t *testing.T) {
	s, f := newServer(t)
	f.AddUser("alice@example.com", oldPassword)
	f.FailQuoting(1)
	err := s.SetPassword(context.Background(), "alice@example.com", newPassword)
	pe := providerError(t, err)
	if pe.Status != http.StatusBadRequest {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(err.Error(), newPassword) || strings.Contains(err.Error(), f.Token()) {
		t.Fatalf("error carries a secret: %v", err)
	}
}

func TestBadEmailIsRefusedBeforeAnyCall(t *testing.T) {
	s, f := newServer(t)
	for _, email := range []string{"", "alice", "@example.com", "alice@", "a/b@example.com"} {
		if err := s.SetPassword(context.Background(), email, newPassword); err == nil {
			t.Errorf("%q accepted", email)
		}
	}
	if err := s.SetPassword(context.Background(), "alice@example.com", ""); err == nil {
		t.Error("empty password accepted")
	}
	if n := len(f.Requests("")); n != 0 {
		t.Fatalf("%d requests sent", n)
	}
}

func TestRateLimitServerErrorAndHang(t *testing.T) {
	s, f := newServer(t)
	f.AddUser("alice@example.com", oldPassword)
	f.RateLimit("set", 30, 1)
	pe := providerError(t, s.SetPassword(context.Background(), "alice@example.com", newPassword))
	if pe.Status != http.StatusTooManyRequests || pe.RetryAfter != 30*time.Second || !pe.Temporary() {
		t.Fatalf("429: %v", pe)
	}
	f.Fail("set", http.StatusBadGateway, 1)
	if pe := providerError(t, s.SetPassword(context.Background(), "alice@example.com", newPassword)); !pe.Temporary() {
		t.Fatalf("502: %v", pe)
	}
	f.Hang("set", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := s.SetPassword(ctx, "alice@example.com", newPassword)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("hang: %v after %s", err, time.Since(start))
	}
	if f.Password("alice@example.com") != oldPassword {
		t.Fatal("a failed call changed the password")
	}
}
