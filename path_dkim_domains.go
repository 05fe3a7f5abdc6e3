package penguinmails

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/locksutil"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
)

// dkimDomainsPrefix holds one claim per DKIM domain, at dkim-domains/{domain}:
// the tenant that owns it. Two tenants publishing keys for one domain would
// each be able to sign for the other, so a domain has one owner across the
// mount. A claim holds no secret, so it is not seal-wrapped.
const dkimDomainsPrefix = "dkim-domains/"

// dkimClaimsCompleteKey marks that every DKIM secret has a claim: secrets
// written before claims existed were claimed once, by backfillClaims. Until
// it exists, the first DKIM write runs the backfill; after it, admitting a
// write reads one claim instead of one entry per tenant.
const dkimClaimsCompleteKey = "dkim-claims-complete"

// domainClaim is the owner of a domain. TransferTo and TransferFrom mark a
// transfer that a crash may have interrupted; every later call on the domain
// finishes it (settle).
type domainClaim struct {
	Tenant      string    `json:"tenant"`
	ClaimedTime time.Time `json:"claimed_time"`
	// TransferTo: the key is being copied to this tenant; Tenant still owns.
	TransferTo string `json:"transfer_to,omitempty"`
	// TransferFrom: Tenant owns; this tenant's old copy is still to delete.
	TransferFrom string `json:"transfer_from,omitempty"`
	TransferBy   actor  `json:"transfer_by,omitempty"`
	// Holders, set with an empty Tenant, records a conflict the backfill
	// found: keys written before claims existed put the domain in several
	// tenants. Every write is refused until an operator deletes all but
	// one; the one left becomes the owner (settle).
	Holders []string `json:"holders,omitempty"`
}

// domainOwners serialises everything that reads or changes a domain's claim.
// Its locks are apart from the secret locks and always taken before them:
// domain, then secrets.
type domainOwners struct {
	locks []*locksutil.LockEntry
	// backfillMu runs one backfill at a time; a second caller then finds
	// the marker.
	backfillMu sync.Mutex
}

func newDomainOwners() *domainOwners { return &domainOwners{locks: locksutil.CreateLocks()} }

func (o *domainOwners) lock(domain string) func() {
	l := locksutil.LockForKey(o.locks, domain)
	l.Lock()
	return l.Unlock
}

func claimKey(domain string) string { return dkimDomainsPrefix + domain }

func loadClaim(ctx context.Context, s logical.Storage, domain string) (*domainClaim, error) {
	raw, err := s.Get(ctx, claimKey(domain))
	if err != nil || raw == nil {
		return nil, err
	}
	var c domainClaim
	if err := raw.DecodeJSON(&c); err != nil {
		return nil, fmt.Errorf("decoding claim of %s: %w", domain, err)
	}
	return &c, nil
}

func saveClaim(ctx context.Context, s logical.Storage, domain string, c *domainClaim) error {
	entry, err := logical.StorageEntryJSON(claimKey(domain), c)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}

func dkimSecretExists(ctx context.Context, s logical.Storage, tenant, domain string) (bool, error) {
	raw, err := s.Get(ctx, secretStorageKey("dkim", tenant, domain))
	return raw != nil, err
}

// ensureClaims claims, once per mount, every DKIM secret written before
// claims existed (see dkimClaimsCompleteKey). It lists names and reads no
// secret: one walk of the dkim/ folders, then one Get per later call.
func (o *domainOwners) ensureClaims(ctx context.Context, b *backend, s logical.Storage) error {
	if done, err := s.Get(ctx, dkimClaimsCompleteKey); err != nil || done != nil {
		return err
	}
	o.backfillMu.Lock()
	defer o.backfillMu.Unlock()
	if done, err := s.Get(ctx, dkimClaimsCompleteKey); err != nil || done != nil {
		return err
	}
	holders := map[string][]string{}
	err := walkSecretNames(ctx, s, "dkim", "", func(tenant, domain string) error {
		holders[domain] = append(holders[domain], tenant)
		return nil
	})
	if err != nil {
		return err
	}
	if len(holders) > 0 { // the clock is read only when there is something to claim
		now := b.now()
		for domain, tenants := range holders {
			if err := backfillClaim(ctx, s, domain, tenants, now); err != nil {
				return err
			}
		}
	}
	return s.Put(ctx, &logical.StorageEntry{Key: dkimClaimsCompleteKey, Value: []byte("{}")})
}

// backfillClaim claims an unclaimed domain for its one holder, or records
// the conflict when it has several.
func backfillClaim(ctx context.Context, s logical.Storage, domain string, tenants []string, now time.Time) error {
	c, err := loadClaim(ctx, s, domain)
	if err != nil || c != nil {
		return err
	}
	c = &domainClaim{ClaimedTime: now}
	if len(tenants) == 1 {
		c.Tenant = tenants[0]
	} else {
		c.Holders = tenants
	}
	return saveClaim(ctx, s, domain, c)
}

// guard runs the secret path's writes and deletes under the domain's lock:
// a write first settles the claim and refuses a domain another tenant owns;
// a delete releases the claim once the secret is gone.
func (o *domainOwners) guard(p *framework.Path, b *backend) {
	// Every operation that writes the secret (create and update share one,
	// patch has its own) is admitted: one left out would write a domain
	// another tenant owns, or claim it outside the lock.
	guarded := map[*framework.PathOperation]bool{}
	for _, op := range []logical.Operation{logical.CreateOperation, logical.UpdateOperation, logical.PatchOperation} {
		write := p.Operations[op].(*framework.PathOperation)
		if !guarded[write] {
			guarded[write] = true
			write.Callback = o.admitted(b, write.Callback)
		}
	}
	del := p.Operations[logical.DeleteOperation].(*framework.PathOperation)
	nextDel := del.Callback
	del.Callback = b.handle(func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		domain := d.Get("name").(string)
		defer o.lock(domain)()
		resp, err := nextDel(ctx, req, d)
		if err != nil || (resp != nil && resp.IsError()) {
			return resp, err
		}
		_, err = o.settle(ctx, b, req.Storage, domain)
		return resp, err
	})
}

// admitted is next under the domain's lock, once admit let the tenant in.
func (o *domainOwners) admitted(b *backend, next framework.OperationFunc) framework.OperationFunc {
	// b.handle again around the whole: the claim code must not panic the
	// plugin process either.
	return b.handle(func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		tenant, domain := d.Get("tenant").(string), d.Get("name").(string)
		if validateIdentifier("tenant", tenant) != nil || checkDKIMDomain(tenant, domain) != nil {
			return next(ctx, req, d) // reports the bad segment
		}
		defer o.lock(domain)()
		if err := o.admit(ctx, b, req.Storage, tenant, domain); err != nil {
			return nil, err // a 409 or a storage error
		}
		return next(ctx, req, d)
	})
}

// admit lets tenant write its secret for domain: the domain is unclaimed
// and nobody else holds it, or tenant owns it. The caller holds the lock.
func (o *domainOwners) admit(ctx context.Context, b *backend, s logical.Storage, tenant, domain string) error {
	if err := o.ensureClaims(ctx, b, s); err != nil {
		return err
	}
	c, err := o.settle(ctx, b, s, domain)
	switch {
	case err != nil:
		return err
	case c == nil, c.Tenant == tenant:
		return nil // a new domain: writeDKIM claims it with the write
	case len(c.Holders) > 0:
		return conflicting(domain, c.Holders)
	}
	return ownedElsewhere(domain, c.Tenant, tenant)
}

func conflicting(domain string, holders []string) error {
	return logical.CodedError(409, fmt.Sprintf("domain %s has keys at %s, all written before domain ownership was recorded; "+
		"a domain has one owner across the mount: an operator deletes all but one (see dkim-domains/%s)",
		domain, strings.Join(holderPaths(domain, holders), " and "), domain))
}

func holderPaths(domain string, tenants []string) []string {
	paths := make([]string, len(tenants))
	for i, t := range tenants {
		paths[i] = "dkim/" + t + "/" + domain
	}
	return paths
}

func ownedElsewhere(domain, owner, tenant string) error {
	return logical.CodedError(409, fmt.Sprintf("domain %s belongs to dkim/%s/%s: a domain has one owner across the mount; "+
		"an operator can move it with: vault write <mount>/dkim-domains/%s/transfer tenant=%s", domain, owner, domain, domain, tenant))
}

// writeDKIM is the DKIM writeFunc: the write itself, then, when the domain
// has no claim yet, the claim for the writing tenant. guard has admitted the
// tenant under the domain lock, so nothing changed in between. A claim left
// by a write that then failed to save is stale; settle drops it.
func (o *domainOwners) writeDKIM(ctx context.Context, b *backend, req *logical.Request, d *framework.FieldData, e *secretEntry, cfg *engineConfig, now time.Time) error {
	if err := writeDKIM(b, req, d, e, cfg, now); err != nil {
		return err
	}
	c, err := loadClaim(ctx, req.Storage, e.Name)
	if err != nil || c != nil {
		return err
	}
	return saveClaim(ctx, req.Storage, e.Name, &domainClaim{Tenant: e.Tenant, ClaimedTime: now})
}

// settle finishes a transfer a crash interrupted and drops a claim whose
// owner has no secret; it returns the claim in force, or nil. The caller
// holds the domain lock.
func (o *domainOwners) settle(ctx context.Context, b *backend, s logical.Storage, domain string) (*domainClaim, error) {
	c, err := loadClaim(ctx, s, domain)
	if err != nil || c == nil {
		return nil, err
	}
	if len(c.Holders) > 0 {
		return settleConflict(ctx, s, domain, c)
	}
	if c.TransferTo != "" || c.TransferFrom != "" {
		if c, err = o.finishTransfer(ctx, b, s, domain, c); err != nil || c == nil {
			return nil, err
		}
	}
	exists, err := dkimSecretExists(ctx, s, c.Tenant, domain)
	if err != nil || exists {
		return c, err
	}
	return nil, s.Delete(ctx, claimKey(domain))
}

// settleConflict drops the holders whose secret an operator has deleted:
// the last one left owns the domain, none leaves it unclaimed.
func settleConflict(ctx context.Context, s logical.Storage, domain string, c *domainClaim) (*domainClaim, error) {
	var left []string
	for _, t := range c.Holders {
		exists, err := dkimSecretExists(ctx, s, t, domain)
		if err != nil {
			return nil, err
		}
		if exists {
			left = append(left, t)
		}
	}
	switch len(left) {
	case len(c.Holders):
		return c, nil
	case 0:
		return nil, s.Delete(ctx, claimKey(domain))
	case 1:
		c = &domainClaim{Tenant: left[0], ClaimedTime: c.ClaimedTime}
	default:
		c.Holders = left
	}
	return c, saveClaim(ctx, s, domain, c)
}

// transfer moves domain's secret, with its versions and history, from its
// owner to tenant. The writes are ordered so that Vault dying between any
// two leaves one owner and the key in at least one place, and the next call
// on the domain (settle) completes the move:
//
//  1. claim {owner, transfer_to: tenant}   the owner still owns
//  2. put dkim/{tenant}/{domain}           a copy; settle redoes it from the original
//  3. claim {tenant, transfer_from: owner} the new owner owns
//  4. delete dkim/{owner}/{domain}
//  5. claim {tenant}
func (o *domainOwners) transfer(ctx context.Context, b *backend, s logical.Storage, domain, tenant string, by actor) (*domainClaim, error) {
	if err := o.ensureClaims(ctx, b, s); err != nil {
		return nil, err
	}
	c, err := o.settle(ctx, b, s, domain)
	switch {
	case err != nil:
		return nil, err
	case c == nil:
		return nil, notFound("no DKIM key for domain %s in any tenant", domain)
	case len(c.Holders) > 0:
		return nil, conflicting(domain, c.Holders)
	}
	if c.Tenant == tenant {
		// Already there, for example a retry of a transfer that settle has
		// just finished: the same answer as the first time.
		return c, nil
	}
	c.TransferTo, c.TransferBy = tenant, by
	if err := saveClaim(ctx, s, domain, c); err != nil {
		return nil, err
	}
	return o.finishTransfer(ctx, b, s, domain, c)
}

// finishTransfer runs steps 2-5 of transfer from whichever c shows.
func (o *domainOwners) finishTransfer(ctx context.Context, b *backend, s logical.Storage, domain string, c *domainClaim) (*domainClaim, error) {
	from, to := c.Tenant, c.TransferTo
	if c.TransferFrom != "" {
		from, to = c.TransferFrom, c.Tenant
	}
	fromKey, toKey := secretStorageKey("dkim", from, domain), secretStorageKey("dkim", to, domain)
	locks := locksutil.LocksForKeys(b.locks, []string{fromKey, toKey})
	for _, l := range locks {
		l.Lock()
	}
	defer func() {
		for i := len(locks) - 1; i >= 0; i-- {
			locks[i].Unlock()
		}
	}()
	if c.TransferTo != "" {
		if err := b.copyDKIMSecret(ctx, s, from, to, domain, c.TransferBy, b.now()); err != nil {
			return nil, err
		}
		c = &domainClaim{Tenant: to, ClaimedTime: b.now(), TransferFrom: from, TransferBy: c.TransferBy}
		if err := saveClaim(ctx, s, domain, c); err != nil {
			return nil, err
		}
	}
	// The copy took over the index keys (store moved them to the new
	// path), so only the entry itself is left to delete.
	if err := s.Delete(ctx, fromKey); err != nil {
		return nil, err
	}
	c = &domainClaim{Tenant: to, ClaimedTime: c.ClaimedTime}
	if err := saveClaim(ctx, s, domain, c); err != nil {
		return nil, err
	}
	return c, nil
}

// copyDKIMSecret stores from's secret as to's, with a history row saying
// so. When from's is gone (a crash after step 4), to's copy stands.
func (b *backend) copyDKIMSecret(ctx context.Context, s logical.Storage, from, to, domain string, by actor, now time.Time) error {
	e, err := loadSecret(ctx, s, "dkim", from, domain)
	if err != nil || e == nil {
		return err
	}
	cfg, err := b.config(ctx, s)
	if err != nil {
		return err
	}
	e.Tenant = to
	e.UpdatedTime = now
	e.record(historyEntry{
		Time: now, Operation: "transfer", Trigger: triggerManual, Actor: by, Result: "success",
		Reason:      fmt.Sprintf("domain transferred from tenant %s to tenant %s", from, to),
		FromVersion: e.CurrentVersion, ToVersion: e.CurrentVersion,
	}, cfg.HistoryLimit)
	return b.store(ctx, s, e, b.kinds["dkim"], cfg, now)
}

// paths are the operator's view of domain ownership.
func (o *domainOwners) paths(b *backend, k *secretKind) []*framework.Path {
	domainField := &framework.FieldSchema{Type: framework.TypeString, Required: true,
		Description: "The DKIM domain. It " + dkimkey.DomainRule + "."}
	attrs := func(suffix string) *framework.DisplayAttributes {
		return &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: suffix}
	}
	return []*framework.Path{
		{
			Pattern:      strings.TrimSuffix(dkimDomainsPrefix, "/") + "/?$",
			DisplayAttrs: attrs("dkim_domains"),
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: b.listFolder("List the DKIM domains that have an owner.",
					func(*framework.FieldData) (string, error) { return dkimDomainsPrefix, nil }),
			},
			HelpSynopsis: "DKIM domains with their owning tenant.",
		},
		{
			Pattern:      dkimDomainsPrefix + `(?P<domain>[^/]+)$`,
			DisplayAttrs: attrs("dkim_domain"),
			Fields:       map[string]*framework.FieldSchema{"domain": domainField},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ReadOperation: &framework.PathOperation{
					Callback: b.handle(o.readOwner), Summary: "Read a DKIM domain's owner and every tenant that holds a key for it."},
				logical.DeleteOperation: &framework.PathOperation{
					Callback: b.handle(o.release(b)), Summary: "Release a stale claim on a DKIM domain.",
					ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
			},
			HelpSynopsis:    "The owner of a DKIM domain.",
			HelpDescription: strings.TrimSpace(dkimDomainHelp),
		},
		{
			Pattern:      dkimDomainsPrefix + `(?P<domain>[^/]+)/transfer$`,
			DisplayAttrs: attrs("dkim_domain_transfer"),
			Fields: map[string]*framework.FieldSchema{
				"domain": domainField,
				"tenant": {Type: framework.TypeString, Required: true, Description: "The tenant that gets the domain with its keys, versions and history."},
			},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.UpdateOperation: &framework.PathOperation{
					Callback: b.handle(o.transferOp(b)), Summary: "Move a DKIM domain, with its keys, to another tenant.",
					ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
			},
			HelpSynopsis:    "Move a DKIM domain to another tenant.",
			HelpDescription: strings.TrimSpace(dkimDomainHelp),
		},
	}
}

// domainFrom reads the {domain} segment of an admin path: canonical only.
func domainFrom(d *framework.FieldData, suffix string) (string, error) {
	domain := d.Get("domain").(string)
	canon, err := dkimkey.CanonicalDomain(domain)
	if err != nil {
		return "", err
	}
	if canon != domain {
		return "", badInput("invalid domain %s: a domain has one spelling (lowercase, no trailing dot, Unicode as IDNA punycode); use %s%s%s",
			quoteShort(domain), dkimDomainsPrefix, canon, suffix)
	}
	return domain, nil
}

// readOwner shows the claim as stored (a read writes nothing, so it does
// not settle): the owner, or the holders of a conflict the backfill found.
func (o *domainOwners) readOwner(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	domain, err := domainFrom(d, "")
	if err != nil {
		return nil, err
	}
	c, err := loadClaim(ctx, req.Storage, domain)
	if err != nil || c == nil {
		return nil, err
	}
	data := map[string]interface{}{
		"domain": domain, "owner": "", "owner_path": "", "claimed_time": formatTime(c.ClaimedTime),
		"transfer_to": c.TransferTo, "transfer_from": c.TransferFrom, "conflict": len(c.Holders) > 0,
		"holders": holderPaths(domain, c.Holders),
	}
	if c.Tenant != "" {
		data["owner"], data["owner_path"] = c.Tenant, "dkim/"+c.Tenant+"/"+domain
		data["holders"] = holderPaths(domain, []string{c.Tenant})
	}
	return &logical.Response{Data: data}, nil
}

// release drops a claim whose owner no longer has the secret. A claim whose
// owner holds the key is not released: that would let a second tenant in.
func (o *domainOwners) release(b *backend) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		domain, err := domainFrom(d, "")
		if err != nil {
			return nil, err
		}
		defer o.lock(domain)()
		c, err := o.settle(ctx, b, req.Storage, domain)
		if err != nil || c == nil {
			return nil, err
		}
		return nil, logical.CodedError(409, fmt.Sprintf("domain %s is owned by dkim/%s/%s, which exists: delete that secret, or transfer the domain with %s%s/transfer",
			domain, c.Tenant, domain, dkimDomainsPrefix, domain))
	}
}

func (o *domainOwners) transferOp(b *backend) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		domain, err := domainFrom(d, "/transfer")
		if err != nil {
			return nil, err
		}
		tenant := d.Get("tenant").(string)
		if err := validateIdentifier("tenant", tenant); err != nil {
			return nil, err
		}
		defer o.lock(domain)()
		c, err := o.transfer(ctx, b, req.Storage, domain, tenant, actorOf(req))
		if err != nil {
			return nil, err
		}
		return &logical.Response{Data: map[string]interface{}{
			"domain": domain, "owner": c.Tenant, "owner_path": "dkim/" + c.Tenant + "/" + domain,
		}}, nil
	}
}

const dkimDomainHelp = `
A DKIM domain belongs to one tenant across the mount: the first tenant to
create dkim/{tenant}/{domain} claims it, and another tenant's create is a 409
naming the owner's path. Deleting the secret releases the claim. Selectors are
therefore unique per domain across the mount.

  vault list   penguinmails/dkim-domains
  vault read   penguinmails/dkim-domains/example.com
  vault write  penguinmails/dkim-domains/example.com/transfer tenant=tenant-2
  vault delete penguinmails/dkim-domains/example.com

read shows the owner, or, with conflict=true, every tenant that held a key
for the domain before ownership was recorded (holders).
transfer moves the secret, with its versions and history, to the tenant; if
Vault stops in the middle, the next call on the domain completes it. delete
releases a claim whose owner's secret is gone (the engine also does so by
itself on the next write); a claim whose owner holds the key is a 409.
`
