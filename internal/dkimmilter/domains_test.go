package dkimmilter

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseDomainMap(t *testing.T) {
	m, err := ParseDomainMap(strings.NewReader(`
# comment
Example.COM.   tenant-1
*.corp.example tenant-2
bücher.example tenant-3
`))
	if err != nil {
		t.Fatal(err)
	}
	for domain, want := range map[string]string{
		"example.com":           "tenant-1",
		"mail.corp.example":     "tenant-2",
		"a.b.corp.example":      "tenant-2",
		"xn--bcher-kva.example": "tenant-3",
		"corp.example":          "", // a wildcard is for names below it only
		"sub.example.com":       "",
		"other.org":             "",
	} {
		got, _ := m.Tenant(domain)
		if got != want {
			t.Errorf("Tenant(%q) = %q, want %q", domain, got, want)
		}
	}
}

func TestParseDomainMapRefusesBadLines(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":                         "line 1: want \"domain tenant\", got 1 fields",
		"example.com t1 extra":                "got 3 fields",
		"# x\nexample.com t1\nEXAMPLE.com t2": "line 3: domain \"EXAMPLE.com\" is mapped to both \"t1\" and \"t2\"",
		"-bad-.com t1":                        "line 1: invalid domain",
		"localhost t1":                        "invalid domain \"localhost\"",
		// The engine's own rules (dkimkey.CanonicalDomain): what it would
		// refuse at sign time is refused when the file loads.
		"example..com t1":                       "line 1: invalid domain",
		strings.Repeat("a", 64) + ".example t1": "line 1: invalid domain",
	} {
		_, err := ParseDomainMap(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one containing %q", in, err, want)
		}
	}
}

type fakeOwners struct {
	owners map[string]string
	err    error
	calls  int
}

func (f *fakeOwners) Owner(_ context.Context, domain string) (string, error) {
	f.calls++
	return f.owners[domain], f.err
}

func TestResolverCachesOwnersForTTL(t *testing.T) {
	m, _ := ParseDomainMap(strings.NewReader("static.example t-static"))
	owners := &fakeOwners{owners: map[string]string{"owned.example": "t-owner"}}
	now := time.Unix(1000, 0)
	r := &Resolver{Map: m, Lookup: owners, TTL: time.Minute, Now: func() time.Time { return now }}
	ctx := context.Background()

	if got, err := r.Tenant(ctx, "static.example"); got != "t-static" || err != nil || owners.calls != 0 {
		t.Fatalf("static: %q %v, %d lookups", got, err, owners.calls)
	}
	for i := 0; i < 3; i++ {
		if got, err := r.Tenant(ctx, "owned.example"); got != "t-owner" || err != nil {
			t.Fatalf("owned: %q %v", got, err)
		}
		if got, err := r.Tenant(ctx, "nobody.example"); got != "" || err != nil {
			t.Fatalf("unowned: %q %v", got, err)
		}
	}
	if owners.calls != 2 {
		t.Fatalf("%d lookups within the TTL, want 2 (one per domain, absent owners cached too)", owners.calls)
	}
	now = now.Add(time.Minute)
	owners.owners["nobody.example"] = "t-new"
	if got, _ := r.Tenant(ctx, "nobody.example"); got != "t-new" || owners.calls != 3 {
		t.Fatalf("after the TTL: %q, %d lookups", got, owners.calls)
	}

	// A failed lookup is an error, not "no owner", and is not cached.
	owners.err = errors.New("connection refused")
	now = now.Add(time.Hour)
	if _, err := r.Tenant(ctx, "owned.example"); err == nil {
		t.Fatal("a failed lookup answered no error")
	}
	owners.err = nil
	if got, err := r.Tenant(ctx, "owned.example"); got != "t-owner" || err != nil {
		t.Fatalf("after recovery: %q %v", got, err)
	}
}

// gatedOwners answers once release is closed, counting the lookups.
type gatedOwners struct {
	release chan struct{}
	calls   atomic.Int32
}

func (g *gatedOwners) Owner(context.Context, string) (string, error) {
	g.calls.Add(1)
	<-g.release
	return "t-burst", nil
}

// A burst of mail from a domain not yet cached makes one lookup.
func TestResolverMergesConcurrentLookups(t *testing.T) {
	g := &gatedOwners{release: make(chan struct{})}
	r := &Resolver{Map: &DomainMap{}, Lookup: g, TTL: time.Minute}
	got := make(chan string, 20)
	for range 20 {
		go func() {
			tenant, _ := r.Tenant(context.Background(), "burst.example")
			got <- tenant
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for g.calls.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	// Without merging, the other 19 callers would each be in a lookup of
	// their own within microseconds: watch for a second one for a while.
	for watch := time.Now().Add(200 * time.Millisecond); time.Now().Before(watch); time.Sleep(time.Millisecond) {
		if n := g.calls.Load(); n > 1 {
			t.Fatalf("%d concurrent lookups for one domain, want 1", n)
		}
	}
	close(g.release)
	for range 20 {
		if tenant := <-got; tenant != "t-burst" {
			t.Fatalf("a caller got %q", tenant)
		}
	}
	if n := g.calls.Load(); n != 1 {
		t.Fatalf("%d lookups for one burst, want 1", n)
	}
}
