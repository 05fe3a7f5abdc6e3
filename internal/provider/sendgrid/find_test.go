package sendgrid_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/sendgrid"
)

// orphanName is the kind of unique name the engine gives a new key.
const orphanName = "vault-billing-mail-v7"

func TestFindReturnsTheOrphanAmongSeveralKeys(t *testing.T) {
	f, d, admin := setup(t)
	current := f.AddKey("vault-billing-mail-v6", "mail.send")
	f.AddKey("vault-billing-mail-v7-other", "mail.send") // a longer name is not a match
	f.AddKey("Vault-Billing-Mail-V7", "mail.send")       // nor another case
	orphan := f.AddKey(orphanName, "mail.send")
	f.AddKey("marketing")

	id, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Now(), []string{admin.ID, current.ID})
	if err != nil || !ok || id != orphan.ID {
		t.Fatalf("Find = %q, %v, %v; want %q", id, ok, err, orphan.ID)
	}
	reqs := f.Requests("")
	if len(reqs) != 1 || reqs[0].Op != "list" {
		t.Fatalf("requests %+v, want one list", reqs)
	}
	r := reqs[0]
	if r.Method != http.MethodGet || r.Path != "/v3/api_keys" || r.Query != "limit=100" || len(r.Body) != 0 {
		t.Errorf("sent %s %s?%s body %q", r.Method, r.Path, r.Query, r.Body)
	}
	if got := r.Header.Get("Authorization"); got != "Bearer "+admin.Secret {
		t.Errorf("Authorization %q", got)
	}
}

func TestFindIgnoresHeldKeys(t *testing.T) {
	f, d, admin := setup(t)
	held := f.AddKey(orphanName)
	_, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, []string{admin.ID, held.ID})
	if err != nil || ok {
		t.Fatalf("Find of a held key: ok %v, err %v", ok, err)
	}
	// The same key is found once the engine no longer holds it.
	id, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, []string{admin.ID})
	if err != nil || !ok || id != held.ID {
		t.Fatalf("Find = %q, %v, %v; want %q", id, ok, err, held.ID)
	}
}

func TestFindNoneIsNotOK(t *testing.T) {
	f, d, admin := setup(t)
	f.AddKey("other")
	id, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, []string{admin.ID})
	if err != nil || ok || id != "" {
		t.Fatalf("Find = %q, %v, %v; want nothing", id, ok, err)
	}
}

func TestFindTwoSameNamedKeysIsAnError(t *testing.T) {
	f, d, admin := setup(t)
	a, b := f.AddKey(orphanName), f.AddKey(orphanName)
	id, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, []string{admin.ID})
	if err == nil || ok || id != "" {
		t.Fatalf("Find = %q, %v, %v; want an error", id, ok, err)
	}
	pe := providerError(t, err)
	if pe.Op != "find key" || pe.Temporary() {
		t.Errorf("err %v", err)
	}
	for _, want := range []string{a.ID, b.ID, orphanName} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if len(f.Live()) != 3 {
		t.Errorf("Find changed the account: %d keys", len(f.Live()))
	}
}

func TestFindRequiresAName(t *testing.T) {
	f, d, _ := setup(t)
	_, ok, err := d.Find(context.Background(), provider.Key{}, time.Time{}, nil)
	if pe := providerError(t, err); ok || pe.Op != "find key" || !strings.Contains(err.Error(), "name") {
		t.Errorf("ok %v, err %v", ok, err)
	}
	if n := len(f.Requests("")); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestFindListingErrorsSurface(t *testing.T) {
	f, d, _ := setup(t)
	f.AddKey(orphanName)
	f.Fail("list", http.StatusInternalServerError, 1)
	_, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, nil)
	if pe := providerError(t, err); ok || pe.Status != 500 || !pe.Temporary() || pe.Op != "find key" {
		t.Errorf("500: ok %v, err %v", ok, err)
	}

	f.EchoSecrets(true)
	wrong := driver(t, f, provider.Key{Secret: "SG.wrong-finder.secret"})
	_, ok, err = wrong.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, nil)
	pe := providerError(t, err)
	if ok || pe.Status != http.StatusUnauthorized || pe.Temporary() {
		t.Errorf("401: ok %v, err %v", ok, err)
	}
	if strings.Contains(err.Error(), "SG.wrong-finder.secret") || pe.Code != "" {
		t.Errorf("the error carries the secret: %v", err)
	}
}

func TestFindWithAKeyThatMayNotReadKeysIs403(t *testing.T) {
	f, _, _ := setup(t)
	sender := f.AddKey("sender", "mail.send")
	d := driver(t, f, sender)
	_, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, nil)
	if pe := providerError(t, err); ok || pe.Status != http.StatusForbidden {
		t.Errorf("ok %v, err %v", ok, err)
	}
}

var _ provider.Finder = (*sendgrid.Driver)(nil)
