package mailgun_test

import (
	"bytes"
	"context"
	"errors"
	"mime"
	"mime/multipart"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailgun"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailgun/mailgunfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
)

// setup starts a fake with the domain mg.example.com and an admin key, and
// a driver authenticated with it.
func setup(t *testing.T) (*mailgunfake.Server, *mailgun.Driver, provider.Key) {
	t.Helper()
	f := mailgunfake.New()
	t.Cleanup(f.Close)
	f.AddDomain("mg.example.com")
	admin := f.AddKey("admin", "vault admin", "")
	return f, driver(t, f, admin), admin
}

func driver(t *testing.T, f *mailgunfake.Server, auth provider.Key) *mailgun.Driver {
	t.Helper()
	d, err := mailgun.New(provider.Endpoint{BaseURL: f.URL(), Auth: auth})
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
	if pe.Provider != "mailgun" {
		t.Fatalf("provider %q", pe.Provider)
	}
	return pe
}

// basicAuth returns the user and password a request carried.
func basicAuth(t *testing.T, r providertest.Request) (string, string) {
	t.Helper()
	req := &http.Request{Header: r.Header}
	user, pass, ok := req.BasicAuth()
	if !ok {
		t.Fatalf("%s %s: no basic auth", r.Method, r.Path)
	}
	return user, pass
}

// formFields decodes a recorded multipart/form-data body.
func formFields(t *testing.T, r providertest.Request) map[string]string {
	t.Helper()
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" {
		t.Fatalf("Content-Type %q", r.Header.Get("Content-Type"))
	}
	form, err := multipart.NewReader(bytes.NewReader(r.Body), params["boundary"]).ReadForm(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for name, vs := range form.Value {
		if len(vs) != 1 {
			t.Fatalf("field %s sent %d times", name, len(vs))
		}
		out[name] = vs[0]
	}
	return out
}

func TestNewChecksRegionAndBaseURL(t *testing.T) {
	for region, want := range map[string]string{"": "https://api.mailgun.net", "us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"} {
		got, err := mailgun.DefaultBaseURL(region)
		if err != nil || got != want {
			t.Errorf("DefaultBaseURL(%q) = %q, %v; want %q", region, got, err, want)
		}
	}
	if _, err := mailgun.New(provider.Endpoint{Region: "global"}); err == nil || !strings.Contains(err.Error(), "region") {
		t.Errorf("region global: %v", err)
	}
	if _, err := mailgun.New(provider.Endpoint{BaseURL: "ftp://api.mailgun.net"}); err == nil || !strings.HasPrefix(err.Error(), "base_url ") {
		t.Errorf("ftp: %v", err)
	}
}

func TestCreateDomainSendingKey(t *testing.T) {
	f, d, admin := setup(t)
	like := provider.Key{ID: "old", Secret: "old-secret", Name: "shop sender", Role: "sending", Domain: "mg.example.com"}
	k, err := d.Create(context.Background(), like)
	if err != nil {
		t.Fatal(err)
	}
	r := f.Requests("create")[0]
	if r.Method != http.MethodPost || r.Path != "/v1/keys" {
		t.Errorf("sent %s %s", r.Method, r.Path)
	}
	if user, pass := basicAuth(t, r); user != "api" || pass != admin.Secret {
		t.Errorf("auth %q:%q", user, pass)
	}
	want := map[string]string{"role": "sending", "kind": "domain", "domain_name": "mg.example.com", "description": "shop sender"}
	if got := formFields(t, r); !reflect.DeepEqual(got, want) {
		t.Errorf("form %v, want %v", got, want)
	}
	if k.ID == "" || k.Secret == "" || k.Name != "shop sender" || k.Role != "sending" || k.Domain != "mg.example.com" {
		t.Errorf("key %+v", k)
	}
	if live := f.Live(); !slices.Equal(live, sorted(admin.Secret, k.Secret)) {
		t.Errorf("live %v", live)
	}
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}

func TestCreateUserKey(t *testing.T) {
	f, d, _ := setup(t)
	k, err := d.Create(context.Background(), provider.Key{Name: "reports", Role: "basic"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"role": "basic", "kind": "user", "description": "reports"}
	if got := formFields(t, f.Requests("create")[0]); !reflect.DeepEqual(got, want) {
		t.Errorf("form %v, want %v", got, want)
	}
	if k.Role != "basic" || k.Domain != "" || k.Name != "reports" {
		t.Errorf("key %+v", k)
	}
}

func TestCreateChecksRoleBeforeCalling(t *testing.T) {
	f, d, _ := setup(t)
	for _, like := range []provider.Key{{Name: "x"}, {Name: "x", Role: "owner"}, {Name: "x", Role: "sending"}} {
		_, err := d.Create(context.Background(), like)
		if err == nil {
			t.Errorf("%+v: no error", like)
			continue
		}
		if !strings.Contains(err.Error(), "role") && !strings.Contains(err.Error(), "domain") {
			t.Errorf("%+v: %v does not name the field", like, err)
		}
	}
	if n := len(f.Requests("create")); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestCreateForAnUnknownDomainIs404(t *testing.T) {
	_, d, _ := setup(t)
	_, err := d.Create(context.Background(), provider.Key{Role: "sending", Domain: "nope.example.com"})
	if pe := providerError(t, err); pe.Status != http.StatusNotFound || pe.Code != "domain not found" {
		t.Errorf("err %v", err)
	}
}

func TestTestUserKeyReadsDomains(t *testing.T) {
	f, d, _ := setup(t)
	k := f.AddKey("developer", "dev", "")
	if err := d.Test(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	r := f.Requests("domains")[0]
	if r.Method != http.MethodGet || r.Path != "/v3/domains" || r.Query != "limit=1" {
		t.Errorf("sent %s %s?%s", r.Method, r.Path, r.Query)
	}
	if user, pass := basicAuth(t, r); user != "api" || pass != k.Secret {
		t.Errorf("auth %q:%q", user, pass)
	}
}

func TestTestSendingKeyPostsAnEmptyMessage(t *testing.T) {
	f, d, _ := setup(t)
	k := f.AddKey("sending", "shop", "mg.example.com")
	if err := d.Test(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	r := f.Requests("messages")[0]
	if r.Method != http.MethodPost || r.Path != "/v3/mg.example.com/messages" {
		t.Errorf("sent %s %s", r.Method, r.Path)
	}
	if _, pass := basicAuth(t, r); pass != k.Secret {
		t.Errorf("auth with %q", pass)
	}
	if got := formFields(t, r); len(got) != 0 {
		t.Errorf("form %v: Test must send no message", got)
	}
	// The same key for another domain, and a deleted key, fail.
	other := k
	other.Domain = "other.example.com"
	f.AddDomain("other.example.com")
	if pe := providerError(t, d.Test(context.Background(), other)); pe.Status != http.StatusUnauthorized {
		t.Errorf("other domain: %v", pe)
	}
	if err := d.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	if pe := providerError(t, d.Test(context.Background(), k)); pe.Status != http.StatusUnauthorized || pe.Temporary() {
		t.Errorf("deleted key: %v", pe)
	}
}

func TestDeleteRemovesTheKeyAndAGoneKeyIsSuccess(t *testing.T) {
	f, d, admin := setup(t)
	k := f.AddKey("basic", "old", "")
	if err := d.Delete(context.Background(), k); err != nil {
		t.Fatal(err)
	}
	r := f.Requests("delete")[0]
	if r.Method != http.MethodDelete || r.Path != "/v1/keys/"+k.ID {
		t.Errorf("sent %s %s", r.Method, r.Path)
	}
	if _, pass := basicAuth(t, r); pass != admin.Secret {
		t.Errorf("auth with %q", pass)
	}
	if live := f.Live(); !slices.Equal(live, []string{admin.Secret}) {
		t.Errorf("live %v", live)
	}
	if err := d.Delete(context.Background(), k); err != nil {
		t.Errorf("second delete (404): %v", err)
	}
	if n := len(f.Requests("delete")); n != 2 {
		t.Errorf("%d delete requests", n)
	}
}

func TestWrongAuthIs401WithoutTheBody(t *testing.T) {
	f, _, _ := setup(t)
	d := driver(t, f, provider.Key{Secret: "not-a-key"})
	_, err := d.Create(context.Background(), provider.Key{Role: "basic"})
	pe := providerError(t, err)
	if pe.Status != http.StatusUnauthorized || pe.Temporary() || pe.Code != "" {
		t.Errorf("err %v: want 401 with no code (the body is plain text)", err)
	}
}

func TestNonAdminMayNotCreate(t *testing.T) {
	f, _, _ := setup(t)
	dev := f.AddKey("developer", "dev", "")
	_, err := driver(t, f, dev).Create(context.Background(), provider.Key{Role: "basic"})
	if pe := providerError(t, err); pe.Status != http.StatusForbidden || !strings.Contains(pe.Code, "permission") {
		t.Errorf("err %v", err)
	}
}

func TestRateLimitSurfacesRetryAfter(t *testing.T) {
	f, d, _ := setup(t)
	f.RateLimit("create", 30, 1)
	_, err := d.Create(context.Background(), provider.Key{Role: "basic"})
	if pe := providerError(t, err); pe.Status != http.StatusTooManyRequests || pe.RetryAfter != 30*time.Second || !pe.Temporary() {
		t.Errorf("err %v", err)
	}
	if _, err := d.Create(context.Background(), provider.Key{Role: "basic"}); err != nil {
		t.Errorf("after the limit: %v", err)
	}
}

func TestServerErrorIsTemporary(t *testing.T) {
	f, d, _ := setup(t)
	k := f.AddKey("basic", "old", "")
	f.Fail("domains", http.StatusServiceUnavailable, 1)
	if pe := providerError(t, d.Test(context.Background(), k)); pe.Status != 503 || !pe.Temporary() || pe.Op != "test key" {
		t.Errorf("err %v", pe)
	}
	// An injected 401 is the plain-text one, whatever the key.
	f.Fail("delete", http.StatusUnauthorized, 1)
	if pe := providerError(t, d.Delete(context.Background(), k)); pe.Status != 401 || pe.Temporary() {
		t.Errorf("err %v", pe)
	}
	if !slices.Contains(f.Live(), k.Secret) {
		t.Error("the key is gone after a failed delete")
	}
}

func TestErrorsNeverCarrySecrets(t *testing.T) {
	f, d, admin := setup(t)
	f.EchoSecrets(true)
	k := f.AddKey("sending", "shop", "mg.example.com")
	wrong := driver(t, f, provider.Key{Secret: "0123456789abcdef0123456789abcdef-01234567-89abcdef"})
	errs := map[string]error{}
	_, errs["create-401"] = wrong.Create(context.Background(), provider.Key{Role: "basic", Secret: k.Secret})
	errs["delete-401"] = wrong.Delete(context.Background(), k)
	_, errs["create-404"] = d.Create(context.Background(), provider.Key{Role: "sending", Domain: "nope.example.com"})
	revoked := k
	revoked.Secret = "revoked"
	errs["test-401"] = d.Test(context.Background(), revoked)
	for op, err := range errs {
		if err == nil {
			t.Errorf("%s: no error", op)
			continue
		}
		for _, secret := range []string{admin.Secret, k.Secret, "0123456789abcdef0123456789abcdef", "revoked"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("%s: error %q carries a secret", op, err)
			}
		}
	}
}

func TestCancelledContextEndsAHangingCall(t *testing.T) {
	f, d, _ := setup(t)
	k := f.AddKey("basic", "old", "")
	f.Hang("delete", 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Delete(ctx, k) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.Requests("delete")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the delete request never reached the fake")
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
		t.Fatal("Delete did not return after its context ended")
	}
	if !slices.Contains(f.Live(), k.Secret) {
		t.Error("a hung delete removed the key")
	}
}
