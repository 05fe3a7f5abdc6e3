package postmark_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/postmark"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/postmark/postmarkfake"
)

func newDriver(t *testing.T) (*postmark.Driver, *postmarkfake.Server) {
	t.Helper()
	f := postmarkfake.New()
	t.Cleanup(f.Close)
	d, err := postmark.New(provider.Endpoint{BaseURL: f.URL()})
	if err != nil {
		t.Fatal(err)
	}
	return d, f
}

func providerError(t *testing.T, err error) *provider.Error {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *provider.Error", err, err)
	}
	if pe.Provider != "postmark" {
		t.Fatalf("Provider = %q", pe.Provider)
	}
	return pe
}

func TestNewChecksRegionAndBaseURL(t *testing.T) {
	if _, err := postmark.New(provider.Endpoint{Region: "eu"}); err == nil || !strings.HasPrefix(err.Error(), "region ") {
		t.Fatalf("region eu: %v", err)
	}
	if _, err := postmark.New(provider.Endpoint{BaseURL: "http://api.postmarkapp.com"}); err == nil || !strings.HasPrefix(err.Error(), "base_url ") {
		t.Fatalf("clear-text base URL: %v", err)
	}
	if u, err := postmark.DefaultBaseURL(""); err != nil || u != "https://api.postmarkapp.com" {
		t.Fatalf("DefaultBaseURL = %q, %v", u, err)
	}
	if _, err := postmark.New(provider.Endpoint{Region: "global"}); err != nil {
		t.Fatal(err)
	}
}

func TestCreateIsManual(t *testing.T) {
	d, f := newDriver(t)
	_, err := d.Create(context.Background(), provider.Key{Name: "outbound"})
	if !errors.Is(err, provider.ErrManual) {
		t.Fatalf("Create: %v, want ErrManual", err)
	}
	providerError(t, err)
	if n := len(f.Requests("")); n != 0 {
		t.Fatalf("Create sent %d requests", n)
	}
}

func TestTestSendsTheServerToken(t *testing.T) {
	d, f := newDriver(t)
	k := f.AddServer("outbound")
	if err := d.Test(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	reqs := f.Requests("test")
	if len(reqs) != 1 {
		t.Fatalf("%d test requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodGet || r.Path != "/server" || r.Query != "" || len(r.Body) != 0 {
		t.Fatalf("request %s %s?%s body %q", r.Method, r.Path, r.Query, r.Body)
	}
	if got := r.Header.Get("X-Postmark-Server-Token"); got != k.Secret {
		t.Fatalf("X-Postmark-Server-Token = %q", got)
	}
	if got := r.Header.Get("Accept"); got != "application/json" {
		t.Fatalf("Accept = %q", got)
	}
	if r.Header.Get("X-Postmark-Account-Token") != "" || r.Header.Get("Authorization") != "" {
		t.Fatal("Test sent another credential")
	}
}

func TestTestRefusesAWrongOrRevokedToken(t *testing.T) {
	d, f := newDriver(t)
	old := f.AddServer("outbound")
	next := f.AddToken("outbound")
	f.RevokeToken(old.Secret) // regenerated in the console
	if got, want := f.Live(), []string{next.Secret}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Live = %v, want %v", got, want)
	}
	if err := d.Test(context.Background(), next); err != nil {
		t.Fatalf("new token: %v", err)
	}
	err := d.Test(context.Background(), old)
	pe := providerError(t, err)
	if pe.Status != http.StatusUnauthorized || pe.Code != "ErrorCode 10" || pe.Temporary() {
		t.Fatalf("revoked token: status %d code %q temporary %v", pe.Status, pe.Code, pe.Temporary())
	}
	// The fake's 401 message quotes the token: the driver must drop it.
	if strings.Contains(err.Error(), old.Secret) {
		t.Fatalf("error carries the token: %v", err)
	}
	if err := d.Test(context.Background(), provider.Key{}); err == nil {
		t.Fatal("an empty token passed")
	}
}

func TestDeleteIsANoOp(t *testing.T) {
	d, f := newDriver(t)
	k := f.AddServer("outbound")
	if err := d.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if n := len(f.Requests("")); n != 0 {
		t.Fatalf("Delete sent %d requests", n)
	}
	if got := f.Live(); !reflect.DeepEqual(got, []string{k.Secret}) {
		t.Fatalf("Live = %v", got)
	}
}

func TestTestAccount(t *testing.T) {
	d, f := newDriver(t)
	f.AddServer("outbound")
	acct := f.AddAccountToken()
	if err := d.TestAccount(context.Background(), acct); err != nil {
		t.Fatal(err)
	}
	r := f.Requests("list")[0]
	if r.Method != http.MethodGet || r.Path != "/servers" || r.Query != "count=1&offset=0" {
		t.Fatalf("request %s %s?%s", r.Method, r.Path, r.Query)
	}
	if r.Header.Get("X-Postmark-Account-Token") != acct || r.Header.Get("Accept") != "application/json" {
		t.Fatalf("headers %v", r.Header)
	}
	f.RevokeToken(acct)
	err := d.TestAccount(context.Background(), acct)
	if pe := providerError(t, err); pe.Status != http.StatusUnauthorized || pe.Op != "test account token" {
		t.Fatalf("revoked account token: %v", err)
	}
	if strings.Contains(err.Error(), acct) {
		t.Fatalf("error carries the token: %v", err)
	}
	if err := d.TestAccount(context.Background(), ""); err == nil {
		t.Fatal("an empty account token passed")
	}
}

func TestServerTokenIsNotAnAccountToken(t *testing.T) {
	d, f := newDriver(t)
	k := f.AddServer("outbound")
	if err := d.TestAccount(context.Background(), k.Secret); err == nil {
		t.Fatal("a server token passed as an account token")
	}
}

func TestRateLimitAndServerError(t *testing.T) {
	d, f := newDriver(t)
	k := f.AddServer("outbound")
	f.RateLimit("test", 7, 1)
	pe := providerError(t, d.Test(context.Background(), k))
	if pe.Status != http.StatusTooManyRequests || pe.RetryAfter != 7*time.Second || !pe.Temporary() {
		t.Fatalf("429: %v", pe)
	}
	f.Fail("test", http.StatusInternalServerError, 1)
	pe = providerError(t, d.Test(context.Background(), k))
	if pe.Status != http.StatusInternalServerError || !pe.Temporary() || pe.Code != "ErrorCode 0: Internal Server Error" {
		t.Fatalf("500: %v", pe)
	}
	if err := d.Test(context.Background(), k); err != nil {
		t.Fatalf("after the faults: %v", err)
	}
}

func TestContextEndsAHangingCall(t *testing.T) {
	d, f := newDriver(t)
	k := f.AddServer("outbound")
	f.Hang("test", 1)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := d.Test(ctx, k)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if pe := providerError(t, err); !pe.Temporary() {
		t.Fatal("a call without answer is not temporary")
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("took %s", el)
	}
}
