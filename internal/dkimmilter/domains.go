// Package dkimmilter is the logic of penguinmails-milter: a milter that has
// outgoing mail signed by the engine's dkim/{tenant}/{domain}/sign path, so
// the private key never leaves Vault. It maps the From domain to a tenant,
// coalesces concurrent messages into batch sign requests, and applies the
// fail-open or fail-closed policy. It imports no Vault SDK: Vault is reached
// over its HTTP API through the narrow Signer and OwnerLookup interfaces.
package dkimmilter

import (
	"bufio"
	"context"
	"fmt"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
	"golang.org/x/sync/singleflight"
	"io"
	"strings"
	"sync"
	"time"
)

// DomainMap maps signing domains to tenants: exact names, and "*.parent"
// entries that match any name below parent (not parent itself).
type DomainMap struct {
	exact    map[string]string
	wildcard map[string]string // parent -> tenant
}

// ParseDomainMap reads "domain tenant" lines; blank lines and lines starting
// with # are ignored. Domains are taken in any spelling and kept canonical.
func ParseDomainMap(r io.Reader) (*DomainMap, error) {
	m := &DomainMap{exact: map[string]string{}, wildcard: map[string]string{}}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"domain tenant\", got %d fields", n, len(fields))
		}
		if err := m.add(fields[0], fields[1]); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
	}
	return m, sc.Err()
}

func (m *DomainMap) add(domain, tenant string) error {
	table, name := m.exact, domain
	if rest, ok := strings.CutPrefix(domain, "*."); ok {
		table, name = m.wildcard, rest
	}
	canon, err := dkimkey.CanonicalDomain(name)
	if err != nil {
		return err
	}
	if prev, dup := table[canon]; dup && prev != tenant {
		return fmt.Errorf("domain %q is mapped to both %q and %q", domain, prev, tenant)
	}
	table[canon] = tenant
	return nil
}

// Tenant returns the tenant of a canonical domain: an exact entry first,
// then the closest wildcard parent.
func (m *DomainMap) Tenant(domain string) (string, bool) {
	if m == nil {
		return "", false
	}
	if t, ok := m.exact[domain]; ok {
		return t, true
	}
	for name := domain; ; {
		_, parent, found := strings.Cut(name, ".")
		if !found {
			return "", false
		}
		if t, ok := m.wildcard[parent]; ok {
			return t, true
		}
		name = parent
	}
}

// OwnerLookup finds the tenant that owns a domain in the engine
// (dkim-domains/{domain}); "" with a nil error means no owner.
type OwnerLookup interface {
	Owner(ctx context.Context, domain string) (string, error)
}

// Resolver maps a sender domain to its tenant: the static map, then (when
// Lookup is set) the engine's owner record, cached for TTL, absent owners
// included so unknown senders cost one lookup per TTL.
type Resolver struct {
	Map    *DomainMap
	Lookup OwnerLookup
	TTL    time.Duration
	Now    func() time.Time // for tests; time.Now when nil

	mu     sync.Mutex
	cache  map[string]cachedOwner
	flight singleflight.Group // one lookup per domain at a time
}

type cachedOwner struct {
	tenant  string
	expires time.Time
}

// maxCachedOwners bounds the cache: From domains come from the senders, and
// a stream of distinct ones must not grow memory without limit.
const maxCachedOwners = 10000

// Tenant returns the domain's tenant, "" when it has none. An error means
// the owner could not be looked up (not that there is none).
func (r *Resolver) Tenant(ctx context.Context, domain string) (string, error) {
	if t, ok := r.Map.Tenant(domain); ok {
		return t, nil
	}
	if r.Lookup == nil {
		return "", nil
	}
	now := r.now()
	r.mu.Lock()
	c, ok := r.cache[domain]
	r.mu.Unlock()
	if ok && now.Before(c.expires) {
		return c.tenant, nil
	}
	// A burst of mail from a new domain asks Vault once, not once a message.
	v, err, _ := r.flight.Do(domain, func() (interface{}, error) {
		tenant, err := r.Lookup.Owner(ctx, domain)
		if err == nil {
			r.remember(domain, tenant, now)
		}
		return tenant, err
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (r *Resolver) remember(domain, tenant string, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil || len(r.cache) >= maxCachedOwners {
		r.cache = map[string]cachedOwner{} // simplest bound: start over
	}
	r.cache[domain] = cachedOwner{tenant: tenant, expires: now.Add(r.TTL)}
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}
