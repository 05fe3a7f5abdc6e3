package mailgun_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailgun"
)

// orphanName is the kind of unique description the engine gives a new key.
const orphanName = "vault-billing-mail-v7"

func TestFindReturnsTheOrphanUserKeyAmongSeveral(t *testing.T) {
	f, d, admin := setup(t)
	current := f.AddKey("developer", "vault-billing-mail-v6", "")
	f.AddKey("developer", orphanName+"-other", "")         // a longer description is no match
	f.AddKey("sending", orphanName, "mg.example.com")      // nor a domain key for a user key
	f.AddKey("developer", strings.ToUpper(orphanName), "") // nor another case
	orphan := f.AddKey("developer", orphanName, "")

	id, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName, Role: "developer"}, time.Now().Add(-time.Minute), []string{admin.ID, current.ID})
	if err != nil || !ok || id != orphan.ID {
		t.Fatalf("Find = %q, %v, %v; want %q", id, ok, err, orphan.ID)
	}
	reqs := f.Requests("")
	if len(reqs) != 1 || reqs[0].Op != "list" {
		t.Fatalf("requests %+v, want one list", reqs)
	}
	r := reqs[0]
	if r.Method != http.MethodGet || r.Path != "/v1/keys" || r.Query != "kind=user" || len(r.Body) != 0 {
		t.Errorf("sent %s %s?%s body %q", r.Method, r.Path, r.Query, r.Body)
	}
	if user, pass := basicAuth(t, r); user != "api" || pass != admin.Secret {
		t.Errorf("auth %s:%s", user, pass)
	}
}

func TestFindDomainKeyFiltersByDomain(t *testing.T) {
	f, d, admin := setup(t)
	f.AddKey("developer", orphanName, "")                // a user key of that name
	f.AddKey("sending", orphanName, "other.example.com") // the name on another domain
	orphan := f.AddKey("sending", orphanName, "mg.example.com")

	like := provider.Key{Name: orphanName, Role: "sending", Domain: "mg.example.com"}
	id, ok, err := d.Find(context.Background(), like, time.Time{}, []string{admin.ID})
	if err != nil || !ok || id != orphan.ID {
		t.Fatalf("Find = %q, %v, %v; want %q", id, ok, err, orphan.ID)
	}
	r := f.Requests("list")[0]
	if r.Path != "/v1/keys" || r.Query != "domain_name=mg.example.com&kind=domain" {
		t.Errorf("sent %s?%s", r.Path, r.Query)
	}
}

// A listing that ignored its filters must not widen the match: the driver
// checks the domain itself.
func TestFindChecksTheDomainOfWhatIsListed(t *testing.T) {
	f, d, admin := setup(t)
	f.IgnoreListFilters(true)
	f.AddKey("sending", orphanName, "other.example.com")
	userKey := f.AddKey("developer", orphanName, "")
	domainKey := f.AddKey("sending", orphanName, "mg.example.com")
	like := provider.Key{Name: orphanName, Role: "sending", Domain: "mg.example.com"}
	id, ok, err := d.Find(context.Background(), like, time.Time{}, []string{admin.ID})
	if err != nil || !ok || id != domainKey.ID {
		t.Fatalf("domain key: Find = %q, %v, %v; want %q", id, ok, err, domainKey.ID)
	}
	id, ok, err = d.Find(context.Background(), provider.Key{Name: orphanName, Role: "developer"}, time.Time{}, []string{admin.ID})
	if err != nil || !ok || id != userKey.ID {
		t.Fatalf("user key: Find = %q, %v, %v; want %q", id, ok, err, userKey.ID)
	}
}

func TestFindIgnoresHeldKeys(t *testing.T) {
	f, d, admin := setup(t)
	held := f.AddKey("developer", orphanName, "")
	_, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, []string{admin.ID, held.ID})
	if err != nil || ok {
		t.Fatalf("Find of a held key: ok %v, err %v", ok, err)
	}
	id, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, []string{admin.ID})
	if err != nil || !ok || id != held.ID {
		t.Fatalf("once not held: Find = %q, %v, %v; want %q", id, ok, err, held.ID)
	}
}

func TestFindSkipsKeysCreatedBeforeSince(t *testing.T) {
	f, d, admin := setup(t)
	since := time.Date(2026, 3, 4, 10, 0, 30, 700_000_000, time.UTC)
	old := f.AddKey("developer", orphanName, "")
	f.SetCreated(old.ID, since.Add(-time.Second))
	orphan := f.AddKey("developer", orphanName, "")
	// Mailgun records seconds: a key made in since's second, before its
	// fraction, is still one made since.
	f.SetCreated(orphan.ID, since.Truncate(time.Second))

	id, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, since, []string{admin.ID})
	if err != nil || !ok || id != orphan.ID {
		t.Fatalf("Find = %q, %v, %v; want %q", id, ok, err, orphan.ID)
	}
	// In another zone, the same instant.
	id, ok, err = d.Find(context.Background(), provider.Key{Name: orphanName}, since.In(time.FixedZone("X", 5*3600)), []string{admin.ID})
	if err != nil || !ok || id != orphan.ID {
		t.Fatalf("since in +05:00: Find = %q, %v, %v; want %q", id, ok, err, orphan.ID)
	}
	// Without since, both match: an error.
	if _, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, []string{admin.ID}); err == nil || ok {
		t.Fatalf("zero since: ok %v, err %v; want two candidates", ok, err)
	}
}

func TestFindNoneIsNotOK(t *testing.T) {
	f, d, admin := setup(t)
	f.AddKey("developer", "other", "")
	id, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, []string{admin.ID})
	if err != nil || ok || id != "" {
		t.Fatalf("Find = %q, %v, %v; want nothing", id, ok, err)
	}
}

func TestFindTwoSameNamedKeysIsAnError(t *testing.T) {
	f, d, admin := setup(t)
	a, b := f.AddKey("developer", orphanName, ""), f.AddKey("developer", orphanName, "")
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
	_, ok, err := d.Find(context.Background(), provider.Key{Domain: "mg.example.com"}, time.Time{}, nil)
	if pe := providerError(t, err); ok || pe.Op != "find key" || !strings.Contains(err.Error(), "name") {
		t.Errorf("ok %v, err %v", ok, err)
	}
	if n := len(f.Requests("")); n != 0 {
		t.Errorf("%d requests sent", n)
	}
}

func TestFindListingErrorsSurface(t *testing.T) {
	f, d, _ := setup(t)
	f.AddKey("developer", orphanName, "")
	f.Fail("list", http.StatusInternalServerError, 1)
	_, ok, err := d.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, nil)
	if pe := providerError(t, err); ok || pe.Status != 500 || !pe.Temporary() || pe.Op != "find key" {
		t.Errorf("500: ok %v, err %v", ok, err)
	}

	f.EchoSecrets(true)
	const wrongSecret = "0123456789abcdef0123456789abcdef-wrong-find"
	wrong := driver(t, f, provider.Key{Secret: wrongSecret})
	_, ok, err = wrong.Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, nil)
	pe := providerError(t, err)
	if ok || pe.Status != http.StatusUnauthorized || pe.Temporary() {
		t.Errorf("401: ok %v, err %v", ok, err)
	}
	if strings.Contains(err.Error(), wrongSecret) {
		t.Errorf("the error carries the secret: %v", err)
	}

	sender := f.AddKey("sending", "sender", "mg.example.com")
	_, ok, err = driver(t, f, sender).Find(context.Background(), provider.Key{Name: orphanName}, time.Time{}, nil)
	pe = providerError(t, err)
	if ok || pe.Status != http.StatusForbidden || strings.Contains(err.Error(), sender.Secret) {
		t.Errorf("403: ok %v, err %v", ok, err)
	}
}

// The fake refuses an unknown kind as the reference documents, and lists
// no secrets.
func TestFakeListingShape(t *testing.T) {
	f, _, admin := setup(t)
	k := f.AddKey("sending", orphanName, "mg.example.com")
	get := func(query string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, f.URL()+"/v1/keys?"+query, nil)
		req.SetBasicAuth("api", admin.Secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		return resp.StatusCode, out
	}
	if status, out := get("kind=robot"); status != 400 || !strings.Contains(out["message"].(string), "kind") {
		t.Errorf("kind=robot: %d %v", status, out)
	}
	status, out := get("kind=domain&domain_name=mg.example.com")
	items, _ := out["items"].([]any)
	if status != 200 || len(items) != 1 || out["total_count"] != float64(1) {
		t.Fatalf("listing: %d %v", status, out)
	}
	item := items[0].(map[string]any)
	if item["id"] != k.ID || item["description"] != orphanName || item["kind"] != "domain" || item["role"] != "sending" || item["domain_name"] != "mg.example.com" {
		t.Errorf("item %v", item)
	}
	if _, err := time.Parse("2006-01-02T15:04:05", item["created_at"].(string)); err != nil {
		t.Errorf("created_at: %v", err)
	}
	if _, has := item["secret"]; has {
		t.Error("the listing carries the secret")
	}
}

var _ provider.Finder = (*mailgun.Driver)(nil)
