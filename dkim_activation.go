package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck"
)

// DKIM keys are published before they sign. A new key is pending (listed
// under publish in dns, never used by sign) until it is activated:
//
//	dns        when the configured resolvers return its record exactly
//	           (all of them, or dkim_activation_quorum)
//	delay      dkim_publish_lead after it was made
//	immediate  at once (the behaviour before staged activation)
//
// The default is delay, with a one-hour lead: it needs no resolver and
// never signs with a key nobody could have published yet, while dns, the
// mode to use in production, needs dns_resolvers. A domain's first key
// waits too: sign answers 409 until it is active. The previous key enters
// its overlap only at activation. When an overlap ends the old record is
// listed as revoked (v=DKIM1; p=) for dkim_revocation_period, then for
// removal.

// Activation modes.
const (
	dkimActivationDNS       = "dns"
	dkimActivationDelay     = "delay"
	dkimActivationImmediate = "immediate"
)

var dkimActivationModes = []string{dkimActivationDNS, dkimActivationDelay, dkimActivationImmediate}

// dkimOptions are the DKIM type's own config settings.
type dkimOptions struct {
	Activation         string        `json:"activation"`
	PublishLead        time.Duration `json:"publish_lead"`
	ActivationDeadline time.Duration `json:"activation_deadline"`
	Quorum             int           `json:"quorum,omitempty"`
	Resolvers          []string      `json:"resolvers,omitempty"`
	RevocationPeriod   time.Duration `json:"revocation_period"`
	DelegationZone     string        `json:"delegation_zone,omitempty"`
}

func defaultDKIMOptions() dkimOptions {
	return dkimOptions{Activation: dkimActivationDelay, PublishLead: time.Hour, ActivationDeadline: 24 * time.Hour,
		RevocationPeriod: 7 * day}
}

// Bounds of the DKIM settings.
const (
	maxPublishLead        = 7 * day
	maxActivationDeadline = 30 * day
	maxRevocationPeriod   = 90 * day
	maxResolvers          = 16
	dnsLookupTimeout      = 2 * time.Second
)

// dkimOptionsOf returns the DKIM settings in force under cfg, decoded once
// when cfg was loaded or written (backend.decodeTypeSettings); the defaults
// for a config that was not.
func dkimOptionsOf(cfg *engineConfig) dkimOptions {
	if o, ok := cfg.decoded["dkim"].(dkimOptions); ok {
		return o
	}
	return defaultDKIMOptions()
}

// decodeDKIMOptions reads stored DKIM settings over the defaults.
func decodeDKIMOptions(raw json.RawMessage) (dkimOptions, error) {
	o := defaultDKIMOptions()
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &o); err != nil {
			return o, fmt.Errorf("decoding dkim settings: %w", err)
		}
	}
	return o, nil
}

func dkimTypeSettings() *typeSettings {
	return &typeSettings{
		fields: map[string]*framework.FieldSchema{
			"dkim_activation": {Type: framework.TypeString, AllowedValues: []interface{}{"dns", "delay", "immediate"},
				Description: "When a new DKIM key starts signing: dns (once dns_resolvers return its record), delay (after dkim_publish_lead) or immediate. Default delay."},
			"dkim_publish_lead": {Type: framework.TypeDurationSecond,
				Description: "delay mode: how long after it is made a DKIM key activates (default 1h, at most 7d)."},
			"dkim_activation_deadline": {Type: framework.TypeDurationSecond,
				Description: "A pending DKIM key not active after this long is reported: failing in rotation/status, last_error, an event (default 24h)."},
			"dkim_activation_quorum": {Type: framework.TypeInt,
				Description: "dns mode: how many resolvers must return the record; 0 means all (default 0)."},
			"dns_resolvers": {Type: framework.TypeCommaStringSlice,
				Description: fmt.Sprintf("Resolvers (host:port, at most %d) that dns activation and dkim/.../dns check=true ask.", maxResolvers)},
			"dkim_revocation_period": {Type: framework.TypeDurationSecond,
				Description: "How long an ended key's record is listed as revoked (v=DKIM1; p=) before it is listed for removal (default 7d)."},
			"dkim_delegation_zone": {Type: framework.TypeString,
				Description: "A zone the platform serves (dkim.mailer.example): domains created after it is set get two stable selectors that customers delegate with CNAMEs once."},
		},
		update: updateDKIMOptions,
		decode: func(raw json.RawMessage) (any, error) { return decodeDKIMOptions(raw) },
		view: func(raw json.RawMessage) (map[string]interface{}, error) {
			o, err := decodeDKIMOptions(raw)
			if err != nil {
				return nil, err
			}
			resolvers := o.Resolvers
			if resolvers == nil {
				resolvers = []string{}
			}
			return map[string]interface{}{
				"dkim_activation": o.Activation, "dkim_publish_lead": durationText(o.PublishLead),
				"dkim_activation_deadline": durationText(o.ActivationDeadline), "dkim_activation_quorum": o.Quorum,
				"dns_resolvers": resolvers, "dkim_revocation_period": durationText(o.RevocationPeriod),
				"dkim_delegation_zone": o.DelegationZone,
			}, nil
		},
		help: []string{
			fmt.Sprintf("%-32s %s", "dkim_activation", "delay (dns, delay or immediate; dns needs dns_resolvers)"),
			fmt.Sprintf("%-32s %s", "dkim_publish_lead", "1h"),
			fmt.Sprintf("%-32s %s", "dkim_activation_deadline", "24h"),
			fmt.Sprintf("%-32s %s", "dkim_activation_quorum", "0 (all resolvers)"),
			fmt.Sprintf("%-32s %s", "dns_resolvers", "none"),
			fmt.Sprintf("%-32s %s", "dkim_revocation_period", "7d"),
			fmt.Sprintf("%-32s %s", "dkim_delegation_zone", "none"),
		},
	}
}

func updateDKIMOptions(_ context.Context, _ *backend, d *framework.FieldData, stored json.RawMessage) (json.RawMessage, error) {
	o, err := decodeDKIMOptions(stored)
	if err != nil {
		return nil, err
	}
	changed := false
	dur := func(field string, dst *time.Duration, max time.Duration) error {
		v, ok := d.GetOk(field)
		if !ok {
			return nil
		}
		got, err := checkDuration(field, v.(int), max)
		*dst, changed = got, true
		return err
	}
	if err := dur("dkim_publish_lead", &o.PublishLead, maxPublishLead); err != nil {
		return nil, err
	}
	if err := dur("dkim_activation_deadline", &o.ActivationDeadline, maxActivationDeadline); err != nil {
		return nil, err
	}
	if err := dur("dkim_revocation_period", &o.RevocationPeriod, maxRevocationPeriod); err != nil {
		return nil, err
	}
	if v, ok := d.GetOk("dkim_activation"); ok {
		o.Activation, changed = strings.TrimSpace(v.(string)), true
		if err := validateOneOf("dkim_activation", o.Activation, dkimActivationModes); err != nil {
			return nil, err
		}
	}
	if v, ok := d.GetOk("dns_resolvers"); ok {
		list, err := checkResolvers(v.([]string))
		if err != nil {
			return nil, err
		}
		o.Resolvers, changed = list, true
	}
	if v, ok := d.GetOk("dkim_activation_quorum"); ok {
		o.Quorum, changed = v.(int), true
	}
	if o.Quorum < 0 || o.Quorum > len(o.Resolvers) && o.Quorum > 0 {
		return nil, badInput("dkim_activation_quorum must be between 0 (all) and the number of dns_resolvers (%d); got %d", len(o.Resolvers), o.Quorum)
	}
	if v, ok := d.GetOk("dkim_delegation_zone"); ok {
		zone := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(v.(string))), ".")
		if zone != "" {
			canon, err := dkimkey.CanonicalDomain(zone)
			if err != nil || canon != zone {
				return nil, badInput("invalid dkim_delegation_zone %s: a DNS zone name in lowercase, for example dkim.mailer.example", quoteShort(zone))
			}
		}
		o.DelegationZone, changed = zone, true
	}
	if o.Activation == dkimActivationDNS && len(o.Resolvers) == 0 {
		return nil, badInput("dkim_activation=dns needs dns_resolvers (host:port list) to ask")
	}
	if !changed {
		return nil, nil
	}
	return json.Marshal(o)
}

// checkResolvers validates host:port resolver addresses.
func checkResolvers(in []string) ([]string, error) {
	var out []string
	for _, r := range in {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		host, port, err := net.SplitHostPort(r)
		if err != nil || host == "" {
			return nil, badInput("invalid dns_resolvers entry %s: must be host:port, for example 10.0.0.53:53", quoteShort(r))
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, badInput("invalid dns_resolvers entry %s: the port must be 1-65535", quoteShort(r))
		}
		out = append(out, r)
	}
	if len(out) > maxResolvers {
		return nil, badInput("dns_resolvers has %d entries: at most %d", len(out), maxResolvers)
	}
	return out, nil
}

// dkimActivationOf is the activation mode of e: its own, or the config's.
func dkimActivationOf(e *secretEntry, o dkimOptions) string {
	if s, err := dkimSettingsOf(e); err == nil && s.Activation != "" {
		return s.Activation
	}
	return o.Activation
}

// dkimAwaitsActivation is the kind's activation hook.
func dkimAwaitsActivation(e *secretEntry, cfg *engineConfig) bool {
	return dkimActivationOf(e, dkimOptionsOf(cfg)) != dkimActivationImmediate
}

// dkimActivationAt is the earliest check: a delay key is ready no sooner.
func dkimActivationAt(e *secretEntry, p *secretVersion, cfg *engineConfig) time.Time {
	o := dkimOptionsOf(cfg)
	if dkimActivationOf(e, o) == dkimActivationDelay {
		return p.CreatedTime.Add(o.PublishLead)
	}
	return time.Time{}
}

// dkimCheckReady decides whether pending version p may sign.
func dkimCheckReady(ctx context.Context, _ *backend, e *secretEntry, p *secretVersion, cfg *engineConfig, now time.Time) (activationCheck, error) {
	o := dkimOptionsOf(cfg)
	c := activationCheck{deadline: p.CreatedTime.Add(o.ActivationDeadline)}
	switch dkimActivationOf(e, o) {
	case dkimActivationImmediate:
		c.ready, c.why = true, "activation is immediate"
		return c, nil
	case dkimActivationDelay:
		at := p.CreatedTime.Add(o.PublishLead)
		c.ready, c.why = !now.Before(at), fmt.Sprintf("published %s ago (dkim_publish_lead %s)", now.Sub(p.CreatedTime).Round(time.Second), o.PublishLead)
		return c, nil
	}
	if len(o.Resolvers) == 0 {
		c.why = "dkim_activation is dns but no dns_resolvers are configured"
		return c, nil
	}
	var m dkimMaterial
	if err := decodeMaterial(p, &m); err != nil {
		return c, err
	}
	// Every record of the version (both keys of a dual-algorithm domain)
	// must be visible.
	c.ready = true
	var why []string
	for _, part := range m.parts() {
		name, want := dkimCheckTarget(e, part)
		res := dnscheck.CheckAll(ctx, resolversOf(o), name, want, o.Quorum)
		c.ready = c.ready && res.OK
		why = append(why, fmt.Sprintf("%s visible at %d of %d resolvers (%s)", name, res.Published, len(o.Resolvers), resolverSummary(res)))
	}
	c.why = strings.Join(why, "; ")
	return c, nil
}

func resolversOf(o dkimOptions) []dnscheck.Resolver {
	out := make([]dnscheck.Resolver, len(o.Resolvers))
	for i, addr := range o.Resolvers {
		out[i] = dnscheck.Resolver{Addr: addr, Timeout: dnsLookupTimeout}
	}
	return out
}

// resolverSummary says per resolver what it returned, for errors and
// history: "10.0.0.53:53 missing, 10.0.0.54:53 published".
func resolverSummary(res dnscheck.Result) string {
	parts := make([]string, 0, len(res.PerResolver))
	for _, r := range res.PerResolver {
		s := r.Addr + " " + string(r.Status)
		if r.Diff != "" {
			s += " (" + r.Diff + ")"
		}
		if r.Err != "" {
			s += " (" + r.Err + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, ", ")
}

// dkimCheckTarget is the name to look up and the record it must hold: the
// customer's name, or, for a delegated domain, the platform zone's name
// that the customer's CNAME points to.
func dkimCheckTarget(e *secretEntry, m dkimKeyPart) (string, string) {
	want := dkimkey.TXTValue(m.KeyType, m.PublicKey)
	if s, err := dkimSettingsOf(e); err == nil && s.DelegationZone != "" {
		return delegatedTarget(m.Selector, e.Name, s.DelegationZone), want
	}
	return dkimkey.RecordName(m.Selector, e.Name), want
}
