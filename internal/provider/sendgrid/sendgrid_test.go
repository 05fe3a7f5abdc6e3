package sendgrid_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/sendgrid"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/sendgrid/sendgridfake"
)

// setup starts a fake with one full-access admin key and a driver
// authenticated with it.
func setup(t *testing.T) (*sendgridfake.Server, *sendgrid.Driver, provider.Key) {
	t.Helper()
	f := sendgridfake.New()
	t.Cleanup(f.Close)
	admin := f.AddKey("admin")
	return f, driver(t, f, admin), admin
}

func driver(t *testing.T, f *sendgridfake.Server, auth provider.Key) *sendgrid.Driver {
	t.Helper()
	d, err := sendgrid.New(provider.Endpoint{BaseURL: f.URL(), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func providerError(t *testing.T, err error) *provider.Error {
	t.Helper()
	var pe *provider.Error
	if !errors.As(err, &pe) {
		t.Fatalf("want a *provider.Error, got %T: %v", err, err)
	}
	if pe.Provider != "sendgrid" {
		t.Fatalf("provider %q", pe.Provider)
	}
	return pe
}

func TestNewChecksRegionAndBaseURL(t *testing.T) {
	for region, want := range map[string]string{"": "https://api.sendgrid.com", "global": "https://api.sendgrid.com", "eu": "https://api.eu.sendgrid.com"} {
		got, err := sendgrid.DefaultBaseURL(region)
		if err != nil || got != want {
			t.Errorf("DefaultBaseURL(%q) = %q, %v; want %q", region, got, err, want)
		}
	}
	if _, err := sendgrid.New(provider.Endpoint{Region: "us"}); err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("region us: %v", err)
	}
	if _, err := sendgrid.New(provider.Endpoint{BaseURL: "http://api.example.com"}); err == nil || !strings.HasPrefix(err.Error(), "base_url ") {
		t.Errorf("http off loopback: %v", err)
	}
	if _, err := sendgrid.New(provider.Endpoint{Region: "eu"}); err != nil {
		t.Errorf("eu default: %v", err)
	}
}

func TestCreateSendsNameAndScopesAndReturnsTheKey(t *testing.T) {
	f, d, admin := setup(t)
	like := provider.Key{ID: "old", Secret: "SG.old", Name: "billing-mail", Scopes: []string{"mail.send", "api_keys.read"}}
	k, err := d.Create(context.Background(), like)
	if err != nil {
		t.Fatal(err)
	}
	reqs := f.Requests("create")
	if len(reqs) != 1 {
		t.Fatalf("%d create requests", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPost || r.Path != "/v3/api_keys" {
		t.Errorf("sent %s %s", r.Method, r.Path)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+admin.Secret {
		t.Errorf("Authorization %q", got)
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var body map[string]any
	if err := json.Unmarshal(r.Body, &body); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"name": "billing-mail", "scopes": []any{"mail.send", "api_keys.read"}}
	if !reflect.DeepEqual(body, want) {
		t.Errorf("body %v, want %v", body, want)
	}
	if k.ID == "" || !strings.HasPrefix(k.Secret, "SG.") || len(k.Secret) != 69 || k.Name != "billing-mail" {
		t.Errorf("key %+v", k)
	}
	if !reflect.DeepEqual(k.Scopes, []string{"api_keys.read", "mail.send"}) {
		t.Errorf("scopes %v", k.Scopes)
	}
	if live := f.Live(); !slices.Equal(live, sorted(admin.Secret, k.Secret)) {
		t.Errorf("live %v", live)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestCreateWithoutScopesOmitsThem(t *testing.T) {
	f, d, _ := setup(t)
	if _, err := d.Create(context.Background(), provider.Key{Name: "full"}); err != nil {
		t.Fatal(err)
	}
	var body map[string]any
	if err := json.Unmarshal(f.Requests("create")[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	if _, ok := body["scopes"]; ok || body["name"] != "full" {
		t.Errorf("body %v: want only a name (full access)", body)
	}
}

func TestCreateRequiresAName(t *testing.T) {
	f, d, _ := setup(t)
	_, err := d.Create(context.Background(), provider.Key{Scopes: []string{"mail.send"}})
	if err == nil || !strings.Contains(err.Error(), "name") {
		t.Fatalf("err %v", err)
	}
	if n := len(f.Requests("create")); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestTestCallsScopesWithTheKeyItself(t *testing.T) {
	f, d, _ := setup(t)
	k := f.AddKey("sender", "mail.send")
	if err := d.Test(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	r := f.Requests("test")[0]
	if r.Method != http.MethodGet || r.Path != "/v3/scopes" || r.Header.Get("Authorization") != "Bearer "+k.Secret {
		t.Errorf("sent %s %s auth %q", r.Method, r.Path, r.Header.Get("Authorization"))
	}
	bad := k
	bad.Secret = "SG.not-a-key"
	err := d.Test(context.Background(), bad)
	if pe := providerError(t, err); pe.Status != http.StatusUnauthorized || pe.Op != "test key" || pe.Temporary() {
		t.Errorf("unknown key: %v", err)
	}
}

func TestDeleteRemovesTheKeyAndAGoneKeyIsSuccess(t *testing.T) {
	f, d, admin := setup(t)
	k := f.AddKey("old", "mail.send")
	if err := d.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	r := f.Requests("delete")[0]
	if r.Method != http.MethodDelete || r.Path != "/v3/api_keys/"+k.ID || r.Header.Get("Authorization") != "Bearer "+admin.Secret {
		t.Errorf("sent %s %s auth %q", r.Method, r.Path, r.Header.Get("Authorization"))
	}
	if live := f.Live(); !slices.Equal(live, []string{admin.Secret}) {
		t.Errorf("live %v", live)
	}
	if err := d.Test(context.Background(), k); err == nil {
		t.Error("a deleted key still tests valid")
	}
	if err := d.Delete(context.Background(), k); err != nil {
		t.Errorf("second delete (404): %v", err)
	}
	if got := len(f.Requests("delete")); got != 2 {
		t.Errorf("%d delete requests, want 2 (the second answered 404)", got)
	}
}

func TestDescribeReadsNameAndScopes(t *testing.T) {
	f, d, admin := setup(t)
	k := f.AddKey("sender", "mail.send", "api_keys.read")
	name, scopes, err := d.Describe(context.Background(), k.ID)
	if err != nil || name != "sender" || !slices.Equal(scopes, []string{"api_keys.read", "mail.send"}) {
		t.Fatalf("Describe = %q %v %v", name, scopes, err)
	}
	r := f.Requests("describe")[0]
	if r.Method != http.MethodGet || r.Path != "/v3/api_keys/"+k.ID || r.Header.Get("Authorization") != "Bearer "+admin.Secret {
		t.Errorf("sent %s %s", r.Method, r.Path)
	}
	_, _, err = d.Describe(context.Background(), "no-such-id")
	if pe := providerError(t, err); pe.Status != http.StatusNotFound || pe.Op != "describe key" {
		t.Errorf("unknown id: %v", err)
	}
}

func TestWrongAuthIs401(t *testing.T) {
	f, _, _ := setup(t)
	d := driver(t, f, provider.Key{Secret: "SG.wrong.wrong"})
	_, err := d.Create(context.Background(), provider.Key{Name: "x"})
	pe := providerError(t, err)
	if pe.Status != http.StatusUnauthorized || pe.Temporary() || errors.Is(err, provider.ErrKeyLimit) {
		t.Errorf("err %v", err)
	}
	if pe.Code != "authorization required" {
		t.Errorf("code %q: want SendGrid's message", pe.Code)
	}
}

func TestRateLimitSurfacesRetryAfter(t *testing.T) {
	f, d, _ := setup(t)
	f.RateLimit("create", 7, 1)
	_, err := d.Create(context.Background(), provider.Key{Name: "x"})
	pe := providerError(t, err)
	if pe.Status != http.StatusTooManyRequests || pe.RetryAfter != 7*time.Second || !pe.Temporary() {
		t.Errorf("err %v", err)
	}
	if _, err := d.Create(context.Background(), provider.Key{Name: "x"}); err != nil {
		t.Errorf("after the limit: %v", err)
	}
}

func TestServerErrorIsTemporary(t *testing.T) {
	f, d, _ := setup(t)
	k := f.AddKey("old")
	f.Fail("delete", http.StatusInternalServerError, 1)
	err := d.Delete(context.Background(), k)
	if pe := providerError(t, err); pe.Status != 500 || !pe.Temporary() || pe.Op != "delete key" {
		t.Errorf("err %v", err)
	}
	if !slices.Contains(f.Live(), k.Secret) {
		t.Error("the key is gone after a failed delete")
	}
}

func TestKeyLimitIsErrKeyLimit(t *testing.T) {
	f, d, _ := setup(t)
	for len(f.Live()) < sendgridfake.MaxKeys {
		f.AddKey("filler")
	}
	before := f.Live()
	_, err := d.Create(context.Background(), provider.Key{Name: "one-too-many"})
	if !errors.Is(err, provider.ErrKeyLimit) {
		t.Fatalf("err %v: want ErrKeyLimit", err)
	}
	if pe := providerError(t, err); pe.Status != http.StatusForbidden || pe.Temporary() {
		t.Errorf("err %v", err)
	}
	if !strings.Contains(err.Error(), "100") {
		t.Errorf("message %q does not name the limit", err)
	}
	if !slices.Equal(f.Live(), before) {
		t.Error("the account's keys changed")
	}
}

func TestForbiddenCreateBelowTheLimitIsNoKeyLimit(t *testing.T) {
	f, _, _ := setup(t)
	reader := f.AddKey("reader", "api_keys.read")
	_, err := driver(t, f, reader).Create(context.Background(), provider.Key{Name: "x"})
	pe := providerError(t, err)
	if pe.Status != http.StatusForbidden || errors.Is(err, provider.ErrKeyLimit) {
		t.Errorf("err %v: want a plain 403", err)
	}
	if got := len(f.Requests("list")); got != 1 {
		t.Errorf("%d list requests: the driver counts the keys once on 403", got)
	}
}

func TestErrorsNeverCarrySecrets(t *testing.T) {
	f, d, admin := setup(t)
	f.EchoSecrets(true)
	k := f.AddKey("victim", "mail.send")
	wrong := driver(t, f, provider.Key{Secret: "SG.wrongwrongwrong.wrongwrongwrongwrong"})
	errs := map[string]error{}
	_, errs["create"] = wrong.Create(context.Background(), provider.Key{Name: "x", Secret: k.Secret})
	errs["delete"] = wrong.Delete(context.Background(), k)
	_, _, errs["describe"] = wrong.Describe(context.Background(), k.ID)
	bad := k
	bad.Secret = "SG.revokedrevoked.revokedrevokedrevoked"
	errs["test"] = d.Test(context.Background(), bad)
	// The admin key is valid but its echoed message names it on a 404.
	_, _, errs["describe-404"] = d.Describe(context.Background(), "missing")
	for op, err := range errs {
		if err == nil {
			t.Errorf("%s: no error", op)
			continue
		}
		for _, secret := range []string{admin.Secret, k.Secret, "SG.wrong", "SG.revoked"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q carries a secret", op, err)
			}
		}
	}
}

func TestCancelledContextEndsAHangingCall(t *testing.T) {
	f, d, _ := setup(t)
	f.Hang("create", 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := d.Create(ctx, provider.Key{Name: "x"})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.Requests("create")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the create request never reached the fake")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err %v: want context.Canceled", err)
		}
		if pe := providerError(t, err); pe.Status != 0 || !pe.Temporary() {
			t.Errorf("err %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Create did not return after its context ended")
	}
}
