package penguinmails

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck"
)

// {domain}/dns: the records an operator publishes, revokes and removes,
// and on request what the resolvers return for them; {domain}/activate.

func pathDKIMDNS(b *backend, k *secretKind) *framework.Path {
	p := secretSubPath(k, "dns", map[string]*framework.FieldSchema{
		"check": {Type: framework.TypeBool, Query: true,
			Description: "Also ask dns_resolvers (config) what they return for each record: published, missing, mismatch (with the difference), revoked or error."},
	})
	p.Operations = map[logical.Operation]framework.OperationHandler{
		logical.ReadOperation: &framework.PathOperation{Callback: b.handle(b.dkimDNS),
			Summary: "DNS records of a domain's DKIM keys: to publish, to revoke and to remove."},
	}
	p.HelpSynopsis, p.HelpDescription = "DNS records of a domain's DKIM keys.", strings.TrimSpace(dkimDNSHelp)
	return p
}

func pathDKIMActivate(b *backend, k *secretKind) *framework.Path {
	p := secretActionPath(b, k, "activate", b.dkimActivate,
		"Activate the domain's pending DKIM key now, whatever the DNS shows.",
		"Activate a pending DKIM key now.",
		"Makes the pending key the signing key at once (the previous one enters its overlap), recorded in the history "+
			"with the reason. Use it when the record is known to be published, or in an emergency.")
	return p
}

func (b *backend) dkimActivate(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	k := b.kinds["dkim"]
	ref, r, err := actionFrom(k, req, d)
	if err != nil {
		return nil, err
	}
	r.Operation = "activate"
	if r.Reason == "" {
		r.Reason = "activated by request"
	}
	e, err := b.withEntry(ctx, req.Storage, ref, func(e *secretEntry, cfg *engineConfig, now time.Time) (*secretEntry, error) {
		if e.pending() == nil {
			return nil, badInput("%s has no key awaiting activation", ref.path())
		}
		if err := b.activate(ctx, e, k, cfg, r, now); err != nil {
			return nil, err
		}
		return e, b.store(ctx, req.Storage, e, k, cfg, now)
	})
	if err != nil || e == nil {
		if err == nil {
			err = notFound("no %s at %s", k.Title, ref.path())
		}
		return nil, err
	}
	var m dkimMaterial
	if err := decodeMaterial(e.current(), &m); err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]interface{}{"version": e.CurrentVersion, "selector": m.Selector,
		"previous_version": rotatedFrom(e)}}, nil
}

// dkimDNS answers {domain}/dns, newest first: records to publish (the
// pending, active and retiring keys), to revoke (revoked keys, and ended
// ones for dkim_revocation_period: v=DKIM1; p=), and to remove.
func (b *backend) dkimDNS(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	k := b.kinds["dkim"]
	ref, err := refFrom(k, d)
	if err != nil {
		return nil, err
	}
	cfg, err := b.config(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := b.now()
	e, err := b.loadDerived(ctx, req.Storage, ref, cfg, now)
	if err != nil || e == nil {
		if e == nil && err == nil {
			err = notFound("no %s at %s", k.Title, ref.path())
		}
		return nil, err
	}
	o := dkimOptionsOf(cfg)
	s, err := dkimSettingsOf(e)
	if err != nil {
		return nil, err
	}
	lists := map[string][]interface{}{"publish": {}, "revoke": {}, "remove": {}}
	listed := map[string]bool{} // a delegated selector's newest record wins
	for i := len(e.Versions) - 1; i >= 0; i-- {
		v := &e.Versions[i]
		var m dkimMaterial
		if err := decodeMaterial(v, &m); err != nil {
			return nil, err
		}
		list := dnsListOf(v, o, now)
		for _, part := range m.parts() {
			rec := dkimRecord(e.Name, v, part, list == "revoke", s.DelegationZone)
			if name := rec["name"].(string); !listed[name] {
				listed[name] = true
				lists[list] = append(lists[list], rec)
			}
		}
	}
	data := map[string]interface{}{"domain": e.Name}
	if s.DelegationZone != "" {
		data["delegation"] = delegationRecords(e, s)
		data["delegation_zone"] = s.DelegationZone
	}
	for name, l := range lists {
		data[name] = l
	}
	if d.Get("check").(bool) {
		if len(o.Resolvers) == 0 {
			return nil, badInput("check=true needs dns_resolvers in config")
		}
		// No lock is held: lookups (each bounded by its timeout) never
		// hold up other requests on the secret.
		checkRecords(ctx, resolversOf(o), lists["publish"], lists["revoke"])
	}
	return &logical.Response{Data: data}, nil
}

// dnsListOf places a version: publish while it is pending, active or in
// its overlap; revoke when revoked or within dkim_revocation_period of its
// end; remove after that.
func dnsListOf(v *secretVersion, o dkimOptions, now time.Time) string {
	switch v.Status {
	case statusPending, statusActive, dkimStatusRetiring:
		return "publish"
	}
	if now.Before(v.StatusTime.Add(o.RevocationPeriod)) || v.Status == statusRevoked && o.RevocationPeriod == 0 {
		return "revoke"
	}
	return "remove"
}

// checkRecords adds to each record what the resolvers return for it. The
// records are checked at once, so a silent resolver costs one timeout, not
// one per record.
func checkRecords(ctx context.Context, resolvers []dnscheck.Resolver, lists ...[]interface{}) {
	var wg sync.WaitGroup
	for _, l := range lists {
		for _, item := range l {
			wg.Add(1)
			go func(rec map[string]interface{}) {
				defer wg.Done()
				checkRecord(ctx, resolvers, rec)
			}(item.(map[string]interface{}))
		}
	}
	wg.Wait()
}

func checkRecord(ctx context.Context, resolvers []dnscheck.Resolver, rec map[string]interface{}) {
	res := dnscheck.CheckAll(ctx, resolvers, rec["check_name"].(string), rec["value"].(string), 0)
	per := make([]map[string]interface{}, 0, len(res.PerResolver))
	for _, r := range res.PerResolver {
		row := map[string]interface{}{"resolver": r.Addr, "status": string(r.Status)}
		if r.Diff != "" {
			row["diff"] = r.Diff
		}
		if r.Err != "" {
			row["error"] = r.Err
		}
		per = append(per, row)
	}
	rec["dns"] = per
	rec["dns_published"] = res.Published
}

// dkimRecord is the DNS view of one version's key. A revoked or ended key's
// record keeps its name and says it is revoked: an empty p= (RFC 6376
// 3.6.1).
func dkimRecord(domain string, v *secretVersion, m dkimKeyPart, revoked bool, zone string) map[string]interface{} {
	value := dkimkey.TXTValue(m.KeyType, m.PublicKey)
	if revoked {
		value = dkimkey.RevokedTXTValue
	}
	// A delegated domain's TXT records live in the platform's zone, where
	// the customer's CNAMEs point.
	name := dkimkey.RecordName(m.Selector, domain)
	if zone != "" {
		name = delegatedTarget(m.Selector, domain, zone)
	}
	rec := map[string]interface{}{
		"version":     v.Version,
		"status":      v.Status,
		"selector":    m.Selector,
		"key_type":    m.KeyType,
		"name":        name,
		"type":        "TXT",
		"value":       value,
		"txt_strings": dkimkey.SplitTXT(value),
		"check_name":  name,
	}
	if !v.GraceUntil.IsZero() {
		rec["grace_until"] = formatTime(v.GraceUntil)
	}
	if v.Status != statusActive && v.Status != statusPending && v.Status != dkimStatusRetiring {
		rec["ended"] = formatTime(v.StatusTime)
	}
	return rec
}

func delegatedTarget(selector, domain, zone string) string {
	return fmt.Sprintf("%s.%s.%s", selector, domain, zone)
}
