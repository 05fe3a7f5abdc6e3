package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
)

// DKIM version statuses: a replaced key stays published (retiring) through
// the DNS grace period so that mail signed with it still verifies, then it is
// retired and its private key is destroyed.
const (
	dkimStatusRetiring = "retiring"
	dkimStatusRetired  = "retired"
)

// dkimMaterial is one key version. Each version has its own selector, so
// the old and the new key can be published side by side.
type dkimMaterial struct {
	Selector  string `json:"selector"`
	KeyType   string `json:"key_type"`
	PublicKey string `json:"public_key"`
	// PrivateKey is PKCS#8 PEM; it is emptied when the grace period ends.
	PrivateKey string `json:"private_key,omitempty"`
	// Companion is the version's Ed25519 key of a dual-algorithm domain
	// (RFC 8463 6: sign with both while receivers adopt Ed25519), with its
	// own selector and record; nil otherwise.
	Companion *dkimKeyPart `json:"companion,omitempty"`
}

// dkimKeyPart is one key of a version.
type dkimKeyPart struct {
	Selector   string `json:"selector"`
	KeyType    string `json:"key_type"`
	PublicKey  string `json:"public_key"`
	PrivateKey string `json:"private_key,omitempty"`
}

// parts lists the version's keys: its own, then its companion.
func (m dkimMaterial) parts() []dkimKeyPart {
	out := []dkimKeyPart{{Selector: m.Selector, KeyType: m.KeyType, PublicKey: m.PublicKey, PrivateKey: m.PrivateKey}}
	if m.Companion != nil {
		out = append(out, *m.Companion)
	}
	return out
}

func dkimKind() *secretKind {
	owners := newDomainOwners() // per mount: each backend makes its own kinds
	return &secretKind{
		Name:     "dkim",
		Title:    "DKIM key",
		defaults: typePolicy{RotationPeriod: 365 * day, AlertThreshold: 30 * day, GracePeriod: 48 * time.Hour, RiskLevel: "low"},
		paths: func(b *backend, k *secretKind) []*framework.Path {
			return pathDKIM(b, k, owners)
		},
		create:       generateDKIMVersion,
		onNewVersion: noteDKIMVersion,
		activation:   dkimAwaitsActivation,
		checkReady:   dkimCheckReady,
		activationAt: dkimActivationAt,
		settings:     dkimTypeSettings(),
		graceStatus:  dkimStatusRetiring,
		afterGrace:   dkimStatusRetired,
		onGraceEnd:   destroyDKIMPrivateKey,
		// A revoked key loses its private part at once; dns lists it under
		// revoke, and sign and private refuse it.
		revocable:         true,
		onRevoke:          destroyDKIMPrivateKey,
		checkNameSpelling: checkDKIMDomain,
		nameRule:          "The signing domain (d=), for example example.com. It " + dkimkey.DomainRule + ".",
	}
}

func pathDKIM(b *backend, k *secretKind, owners *domainOwners) []*framework.Path {
	fields := map[string]*framework.FieldSchema{
		"key_type": {Type: framework.TypeString,
			Description: "Key algorithm: rsa-2048 (default), rsa-3072, rsa-4096 or ed25519 (RFC 8463). RSA below 2048 bits is refused. " +
				"On an existing key, a different key_type makes a new key with a new selector (the old one retires after the grace period)."},
		"selector": {Type: framework.TypeString,
			Description: "Selector of the new key, one DNS label in lowercase, unique within the domain. Left out, one is made from selector_prefix and the month (pm202611, pm202611-2, ...). " +
				"On an existing key, a different selector makes a new key."},
		"selector_prefix": {Type: framework.TypeString,
			Description: fmt.Sprintf("Prefix of generated selectors (default %q), %s.", dkimDefaultSelectorPrefix, dkimkey.SelectorPrefixRule)},
		"dual_algorithm": {Type: framework.TypeBool,
			Description: "Also hold an Ed25519 key beside the RSA key (key_type must be rsa-*), each with its own selector and record; " +
				"sign with algorithm=both returns both signatures (RFC 8463). Set on create; cannot change."},
		"activation": {Type: framework.TypeString,
			Description: "When this domain's new keys start signing: dns, delay or immediate; empty follows config dkim_activation."},
		"exportable": {Type: framework.TypeBool, Default: true,
			Description: "Whether the private key can be exported at {domain}/private (default true). Once false it can never be turned on again; the key can still sign."},
		"private_key": {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
			Description: "Import this key instead of generating one: PEM, PKCS#1 or PKCS#8, RSA 2048/3072/4096 bits or Ed25519. " +
				"key_type follows the key. On an existing secret, a different key makes a new version; the current key again changes nothing."},
	}
	secret := secretPath(b, k, fields, owners.writeDKIM, viewDKIM, "Create, read, update and delete the DKIM key of a domain.", dkimHelp)
	owners.guard(secret, b)
	private := dkimSubPath(b, k, "private", logical.UpdateOperation, dkimPrivate, map[string]*framework.FieldSchema{
		"version": {Type: framework.TypeInt,
			Description: "Version whose private key to return; 0 or unset means the active one."},
		"algorithm": {Type: framework.TypeString,
			Description: "Dual-algorithm domains: rsa (default) or ed25519, the key to export."},
	}, "Export a DKIM private key (PEM) for MTAs that sign by themselves.", dkimPrivateHelp)
	// Exporting writes nothing, but it is an update (D3: one capability);
	// the active node answers it like every other update.
	forwardToActive(private)
	return append([]*framework.Path{
		secret,
		pathDKIMDNS(b, k),
		pathDKIMActivate(b, k),
		dkimSignPath(b, k),
		private,
	}, owners.paths(b, k)...)
}

// dkimSubPath builds a {tenant}/{domain}/{suffix} path with one operation.
// None of them writes storage.
func dkimSubPath(b *backend, k *secretKind, suffix string, op logical.Operation, fn entryHandler,
	extra map[string]*framework.FieldSchema, synopsis, description string) *framework.Path {
	p := secretSubPath(k, suffix, extra)
	p.Operations = map[logical.Operation]framework.OperationHandler{
		op: &framework.PathOperation{Callback: b.handle(b.onEntry(k, fn)), Summary: synopsis},
	}
	p.HelpSynopsis, p.HelpDescription = synopsis, strings.TrimSpace(description)
	return p
}

func forwardToActive(p *framework.Path) {
	for _, h := range p.Operations {
		if op, ok := h.(*framework.PathOperation); ok {
			op.ForwardPerformanceStandby, op.ForwardPerformanceSecondary = true, true
		}
	}
}

// dkimSignPattern is the sign path's pattern; the forwarding test lists it
// among the update operations that write nothing.
var dkimSignPattern = secretSubPattern("dkim", "sign")

// dkimSignPath is {domain}/sign. The message size is checked against the
// config before the secret is read or anything is decoded.
func dkimSignPath(b *backend, k *secretKind) *framework.Path {
	p := dkimSubPath(b, k, "sign", logical.UpdateOperation, nil, dkimSignFields(),
		"Sign a message with the domain's active DKIM key and return the DKIM-Signature header.", dkimSignHelp)
	p.Operations[logical.UpdateOperation].(*framework.PathOperation).Callback = b.handle(
		func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
			cfg, err := b.config(ctx, req.Storage)
			if err != nil {
				return nil, err
			}
			if _, batch := d.Raw["batch_input"]; batch {
				return b.dkimSignBatchRequest(ctx, req, d, k, cfg)
			}
			encoded, opts, err := dkimSignInput(d, cfg.DKIMSignMaxMessageBytes)
			if err != nil {
				return nil, err
			}
			return b.onEntry(k, func(e *secretEntry, ref secretRef, _ *framework.FieldData) (*logical.Response, error) {
				resp, err := b.dkimSign(e, ref, encoded, opts, strings.TrimSpace(d.Get("algorithm").(string)))
				if err == nil {
					b.countUse(req.Storage, e) // a signature is a use for max_uses
				}
				return resp, err
			})(ctx, req, d)
		})
	return p
}

// dkimSettingsOf decodes a secret's settings, or returns the defaults for a
// secret being created.
func dkimSettingsOf(e *secretEntry) (dkimSettings, error) {
	s := dkimSettings{KeyType: dkimkey.DefaultKeyType, Exportable: true, SelectorPrefix: dkimDefaultSelectorPrefix}
	if len(e.Settings) == 0 {
		return s, nil
	}
	if err := json.Unmarshal(e.Settings, &s); err != nil {
		return s, fmt.Errorf("decoding dkim settings: %w", err)
	}
	return s, nil
}

// dkimChange is a validated write: the settings to store, and whether (and
// with which selector; empty means generated) a new key is made.
type dkimChange struct {
	settings dkimSettings
	newKey   bool
	selector string
	// imported is the key given as private_key; nil means generate one.
	imported *dkimkey.KeyPair
}

// dkimChangeFrom validates every field of a write against the current
// secret. cur is the active version's material (zero when creating).
func dkimChangeFrom(d *framework.FieldData, e *secretEntry, cur dkimMaterial, cfg *engineConfig, now time.Time) (dkimChange, error) {
	creating := e.current() == nil
	settings, err := dkimSettingsOf(e)
	if err != nil {
		return dkimChange{}, err
	}
	c := dkimChange{settings: settings, newKey: creating}
	if v, ok := d.GetOk("private_key"); ok {
		if err := c.importKey(v.(string), d, cur); err != nil {
			return c, err
		}
	} else if v, ok := d.GetOk("key_type"); ok {
		t, err := dkimkey.ParseKeyType(v.(string))
		if err != nil {
			return c, err
		}
		c.newKey = c.newKey || t.Name != cur.KeyType
		c.settings.KeyType = t.Name
	}
	if v, ok := d.GetOk("selector_prefix"); ok {
		if err := dkimkey.CheckSelectorPrefix(v.(string)); err != nil {
			return c, err
		}
		c.settings.SelectorPrefix = v.(string)
	}
	if v, ok := d.GetOk("activation"); ok {
		mode := strings.TrimSpace(v.(string))
		if mode != "" {
			if err := validateOneOf("activation", mode, dkimActivationModes); err != nil {
				return c, err
			}
		}
		if mode == dkimActivationDNS && len(dkimOptionsOf(cfg).Resolvers) == 0 {
			return c, badInput("activation=dns needs dns_resolvers in config to ask")
		}
		c.settings.Activation = mode
	}
	if v, ok := d.GetOk("dual_algorithm"); ok {
		if !creating && v.(bool) != settings.DualAlgorithm {
			return c, badInput("dual_algorithm is set on create and cannot change: delete the key and create it again")
		}
		c.settings.DualAlgorithm = v.(bool)
	}
	if c.settings.DualAlgorithm && !strings.HasPrefix(c.settings.KeyType, "rsa-") {
		return c, badInput("dual_algorithm needs an rsa key_type (the Ed25519 key is the second one); got key_type %s", c.settings.KeyType)
	}
	if creating && c.settings.DelegationZone == "" {
		c.settings.DelegationZone = dkimOptionsOf(cfg).DelegationZone
	}
	if v, ok := d.GetOk("exportable"); ok {
		if v.(bool) && !settings.Exportable && !creating {
			return c, badInput("exportable cannot be turned on: this key was created with exportable=false, and such a key can never be exported")
		}
		c.settings.Exportable = v.(bool)
	}
	if v, ok := d.GetOk("selector"); ok {
		s := v.(string)
		if c.settings.DelegationZone != "" {
			return c, badInput("selector cannot be chosen for %s: a delegated domain alternates between its two fixed selectors %s",
				e.Name, strings.Join(delegatedSelectors(c.settings), " and "))
		}
		if err := dkimkey.CheckSelector("selector", s); err != nil {
			return c, err
		}
		if s == cur.Selector && !c.newKey {
			return c, nil // the active key already has it
		}
		if n := versionWithSelector(e, s); n > 0 {
			return c, badInput("invalid selector %q: version %d of %s already uses it; selectors are unique per domain", s, n, e.Name)
		}
		if settings.taken(e).at(s, now) {
			return c, badInput("invalid selector %q: an earlier key of %s used it less than %d days ago; selectors are unique per domain",
				s, e.Name, int(dkimSelectorQuarantine/day))
		}
		c.selector, c.newKey = s, true
	}
	return c, nil
}

// importKey takes private_key: its key type replaces key_type (a key_type
// that says otherwise is a 400), and only a key other than the active one
// makes a new version, so importing the same key again changes nothing.
func (c *dkimChange) importKey(pemText string, d *framework.FieldData, cur dkimMaterial) error {
	pair, t, err := dkimkey.Import(pemText)
	if err != nil {
		return err
	}
	if v, ok := d.GetOk("key_type"); ok {
		given, err := dkimkey.ParseKeyType(v.(string))
		if err != nil {
			return err
		}
		if given.Name != t.Name {
			return badInput("key_type %s does not match private_key, which is an %s key; leave key_type out when importing", given.Name, t.Name)
		}
	}
	c.imported = &pair
	c.newKey = c.newKey || pair.PublicB64 != cur.PublicKey
	c.settings.KeyType = t.Name
	return nil
}

// writeDKIM creates a key, or updates settings; a new key_type or selector
// on an existing secret makes a new key, recorded as a rotation. The domain
// is claimed for the tenant first (domainOwners.writeDKIM).
func writeDKIM(b *backend, req *logical.Request, d *framework.FieldData, e *secretEntry, cfg *engineConfig, now time.Time) error {
	creating := e.current() == nil
	var cur dkimMaterial
	if !creating {
		if err := decodeMaterial(e.current(), &cur); err != nil {
			return err
		}
	}
	c, err := dkimChangeFrom(d, e, cur, cfg, now)
	if err != nil {
		return err
	}
	var material dkimMaterial
	if c.newKey {
		if material, err = newDKIMMaterial(b, e, c.settings, c.selector, now, c.imported); err != nil {
			return err
		}
	}
	if p := e.pending(); p != nil && c.newKey {
		return logical.CodedError(409, fmt.Sprintf("version %d of %s awaits activation: activate it, or wait, before making another key", p.Version, e.Name))
	}
	raw, err := json.Marshal(c.settings)
	if err != nil {
		return err
	}
	// Everything is validated and generated: only now is the entry changed.
	// The new version's selector is recorded by noteDKIMVersion.
	e.Settings = raw
	k := e.kindOf(b)
	switch {
	case creating && k.awaitsActivation(e, cfg):
		return e.stageFirst(material, k, cfg, actorOf(req), now)
	case creating:
		e.LastRotated = now
		return e.addVersion(material, actorOf(req), now, k, cfg)
	case c.newKey && k.awaitsActivation(e, cfg):
		return e.stageRotation(material, k, cfg, c.rotation(req), now)
	case c.newKey:
		return e.rotateTo(material, k, cfg, c.rotation(req), now)
	}
	return nil
}

// rotation is the history row of a write that replaced the key: an
// imported key says so, so that history tells it from a generated one.
func (c dkimChange) rotation(req *logical.Request) rotation {
	reason := "new key_type or selector written"
	if c.imported != nil {
		reason = "private_key imported"
	}
	return rotation{Trigger: triggerManual, Reason: reason, Actor: actorOf(req)}
}

// generateDKIMVersion makes a rotated version: a new key of the secret's
// key_type under a new generated selector for the month of now. It leaves
// e alone; noteDKIMVersion records the selector when the version is added.
func generateDKIMVersion(_ context.Context, b *backend, e *secretEntry, _ *engineConfig, now time.Time, _ map[string]interface{}) (interface{}, error) {
	settings, err := dkimSettingsOf(e)
	if err != nil {
		return nil, err
	}
	return newDKIMMaterial(b, e, settings, "", now, nil)
}

// newDKIMMaterial generates a key (or takes the imported one) under
// selector, or under a generated one when selector is empty.
func newDKIMMaterial(b *backend, e *secretEntry, s dkimSettings, selector string, now time.Time, imported *dkimkey.KeyPair) (dkimMaterial, error) {
	t, err := dkimkey.ParseKeyType(s.KeyType)
	if err != nil {
		return dkimMaterial{}, err
	}
	if selector == "" && s.DelegationZone != "" {
		var err error
		if selector, err = nextDelegatedSelector(e, s); err != nil {
			return dkimMaterial{}, err
		}
	}
	if selector == "" {
		selector = nextSelector(s, now, s.taken(e))
	}
	if n := len(dkimkey.RecordName(selector, e.Name)); n > dkimkey.MaxName {
		return dkimMaterial{}, badInput("invalid domain %s with selector %q: the record name {selector}._domainkey.{domain} would be %d characters, DNS allows %d",
			quoteShort(e.Name), selector, n, dkimkey.MaxName)
	}
	var pair dkimkey.KeyPair
	if imported != nil {
		pair = *imported
	} else if pair, err = dkimkey.Generate(b.GetRandomReader(), t); err != nil {
		return dkimMaterial{}, err
	}
	m := dkimMaterial{Selector: selector, KeyType: t.Name, PublicKey: pair.PublicB64, PrivateKey: pair.PrivatePEM}
	if s.DualAlgorithm {
		if m.Companion, err = companionKey(b, e, selector); err != nil {
			return dkimMaterial{}, err
		}
	}
	return m, nil
}

// companionSuffix makes the Ed25519 key's selector from the RSA key's.
const companionSuffix = "-ed"

// companionKey makes the Ed25519 key of a dual-algorithm version.
func companionKey(b *backend, e *secretEntry, selector string) (*dkimKeyPart, error) {
	sel := selector + companionSuffix
	if err := dkimkey.CheckSelector("selector", sel); err != nil {
		return nil, badInput("the Ed25519 selector %s made from selector %s is not valid: %v", sel, selector, err)
	}
	if n := len(dkimkey.RecordName(sel, e.Name)); n > dkimkey.MaxName {
		return nil, badInput("invalid domain %s: the Ed25519 record name would be %d characters, DNS allows %d", quoteShort(e.Name), n, dkimkey.MaxName)
	}
	t, err := dkimkey.ParseKeyType("ed25519")
	if err != nil {
		return nil, err
	}
	pair, err := dkimkey.Generate(b.GetRandomReader(), t)
	if err != nil {
		return nil, err
	}
	return &dkimKeyPart{Selector: sel, KeyType: t.Name, PublicKey: pair.PublicB64, PrivateKey: pair.PrivatePEM}, nil
}

// versionWithSelector returns the kept version that uses selector, or 0.
func versionWithSelector(e *secretEntry, selector string) int {
	for i := range e.Versions {
		var m dkimMaterial
		if decodeMaterial(&e.Versions[i], &m) == nil && m.Selector == selector {
			return e.Versions[i].Version
		}
	}
	return 0
}

// destroyDKIMPrivateKey is the onGraceEnd and onRevoke hook: a retired or
// revoked key keeps its public part (history, DNS clean-up) and loses its
// private key.
func destroyDKIMPrivateKey(v *secretVersion) error {
	var m dkimMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return err
	}
	m.PrivateKey = ""
	if m.Companion != nil {
		m.Companion.PrivateKey = ""
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	v.Material = raw
	return nil
}

// viewDKIM renders a version for reads and write responses. It never
// includes the private key, whatever withSecrets says: that is /private.
func viewDKIM(e *secretEntry, v *secretVersion, _ bool) (map[string]interface{}, error) {
	settings, err := dkimSettingsOf(e)
	if err != nil {
		return nil, err
	}
	var m, active dkimMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return nil, err
	}
	if err := decodeMaterial(e.current(), &active); err != nil {
		return nil, err
	}
	versions, err := dkimVersionsView(e)
	if err != nil {
		return nil, err
	}
	value := dkimkey.TXTValue(m.KeyType, m.PublicKey)
	out := map[string]interface{}{
		"domain":          e.Name,
		"selector":        m.Selector,
		"active_selector": active.Selector,
		"key_type":        m.KeyType,
		"public_key":      m.PublicKey,
		"record_name":     dkimkey.RecordName(m.Selector, e.Name),
		"txt_value":       value,
		"txt_strings":     dkimkey.SplitTXT(value),
		"exportable":      settings.Exportable,
		"selector_prefix": settings.SelectorPrefix,
		"has_private_key": m.PrivateKey != "",
		// Replaces the shared versions map with one that also names each
		// version's selector and record.
		"versions": versions,
	}
	if u := dkimkey.UnicodeDomain(e.Name); u != "" {
		out["domain_unicode"] = u
	}
	out["activation"] = settings.Activation
	out["dual_algorithm"] = settings.DualAlgorithm
	if m.Companion != nil {
		cv := dkimkey.TXTValue(m.Companion.KeyType, m.Companion.PublicKey)
		out["ed25519_selector"] = m.Companion.Selector
		out["ed25519_public_key"] = m.Companion.PublicKey
		out["ed25519_record_name"] = dkimkey.RecordName(m.Companion.Selector, e.Name)
		out["ed25519_txt_value"] = cv
	}
	if settings.DelegationZone != "" {
		out["delegation_zone"] = settings.DelegationZone
		out["record_name"] = delegatedTarget(m.Selector, e.Name, settings.DelegationZone)
	}
	return out, nil
}

func dkimVersionsView(e *secretEntry) (map[string]interface{}, error) {
	out := e.versionsView(&secretKind{graceStatus: dkimStatusRetiring}) // stages need only the overlap status
	for i := range e.Versions {
		v := &e.Versions[i]
		var m dkimMaterial
		if err := decodeMaterial(v, &m); err != nil {
			return nil, err
		}
		item := out[fmt.Sprint(v.Version)].(map[string]interface{})
		item["selector"] = m.Selector
		item["key_type"] = m.KeyType
		item["record_name"] = dkimkey.RecordName(m.Selector, e.Name)
		item["has_private_key"] = m.PrivateKey != ""
	}
	return out, nil
}

// refuseRevoked answers 409 for a revoked version: its private key was
// destroyed, and only a rotation makes a key to sign with again.
func refuseRevoked(ref secretRef, v *secretVersion, m dkimMaterial) error {
	if v.Status != statusRevoked {
		return nil
	}
	return logical.CodedError(409, fmt.Sprintf("version %d (selector %s) of %s was revoked at %s and its private key destroyed; "+
		"rotate to make a new key: vault write <mount>/%s/rotate reason=...",
		v.Version, m.Selector, ref.path(), formatTime(v.StatusTime), ref.path()))
}

func dkimSignFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"message": {Type: framework.TypeString,
			Description: "The RFC 5322 message (header, empty line, body), base64-encoded (standard alphabet; whitespace is ignored). " +
				"At most dkim_sign_max_message_bytes (config, default 4 MiB) once decoded; larger is a 413. Required unless batch_input is given."},
		"batch_input": {Type: framework.TypeSlice,
			Description: fmt.Sprintf("Instead of message: a list of at most %d objects {message, headers, canonicalization, algorithm}, "+
				"each signed like a single message (headers, canonicalization and algorithm left out take the request's). "+
				"The decoded messages together may take at most %d times dkim_sign_max_message_bytes (413 above). "+
				"The answer's batch_results has one object per item, in order: the fields of a single sign, or error.",
				dkimBatchMaxItems, dkimBatchBytesFactor)},
		"headers": {Type: framework.TypeCommaStringSlice,
			Description: fmt.Sprintf("Header fields to sign (h=); must include From; at most %d. Each %s. Default: %s.",
				dkimkey.MaxHeaders, dkimkey.HeaderNameRule, strings.Join(dkimkey.DefaultHeaders, ", "))},
		"algorithm": {Type: framework.TypeString,
			Description: "Dual-algorithm domains: rsa (default), ed25519, or both (both DKIM-Signature headers, RSA first, RFC 8463 6)."},
		"canonicalization": {Type: framework.TypeString, Default: dkimkey.DefaultCanonicalization,
			Description: "header/body canonicalization (c=), each simple or relaxed (default relaxed/relaxed). One name alone sets the header algorithm; the body then uses simple (RFC 6376 3.5)."},
	}
}

// dkimSignInput validates a sign request: the message's size against the
// limit (counted on the base64, before anything is decoded; 413 above it),
// the headers and the canonicalization. Domain, selector and key are filled
// in from the stored secret by the caller.
func dkimSignInput(d *framework.FieldData, limit int) (string, *dkim.SignOptions, error) {
	encoded := d.Get("message").(string)
	size, err := dkimkey.MessageSize(encoded)
	if err != nil {
		return "", nil, err
	}
	if size > limit {
		return "", nil, logical.CodedError(413, fmt.Sprintf("message is %d bytes once decoded; dkim_sign_max_message_bytes (config) allows %d", size, limit))
	}
	var headers []string
	if v, ok := d.GetOk("headers"); ok {
		headers = v.([]string)
	}
	opts, err := dkimkey.SignOptions(headers, d.Get("canonicalization").(string))
	return encoded, opts, err
}

// dkimSign answers {domain}/sign. It reads storage only: the signature is
// made with the active key and nothing is recorded, so performance standbys
// serve it themselves.
func (b *backend) dkimSign(e *secretEntry, ref secretRef, encoded string, opts *dkim.SignOptions, algorithm string) (*logical.Response, error) {
	v, m, err := dkimSigningVersion(e, ref)
	if err != nil {
		return nil, err
	}
	data, err := b.dkimSignWith(e, v, m, encoded, opts, algorithm)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: data}, nil
}

// dkimSigningVersion returns the version sign uses, the current one, with
// its material; it refuses a revoked version and one awaiting activation.
// The entry is the one just read (cached or not), so a revocation or an
// activation written before is always seen.
func dkimSigningVersion(e *secretEntry, ref secretRef) (*secretVersion, dkimMaterial, error) {
	v := e.current()
	var m dkimMaterial
	if v == nil {
		return nil, m, fmt.Errorf("%s has no current version", ref.path())
	}
	if err := decodeMaterial(v, &m); err != nil {
		return nil, m, err
	}
	// A pending key is named before a revoked current one: after an
	// incident rotation the fix is its activation, not another rotation
	// (which is refused while it is pending).
	if p := e.pending(); p != nil && v.Status != statusActive {
		var pm dkimMaterial
		if err := decodeMaterial(p, &pm); err != nil {
			return nil, m, err
		}
		return nil, m, logical.CodedError(409, fmt.Sprintf("%s has no active key yet: version %d (selector %s) awaits activation; "+
			"publish its record (see %s/dns), then it activates, or activate it with %s/activate", ref.path(), p.Version, pm.Selector, ref.path(), ref.path()))
	}
	if err := refuseRevoked(ref, v, m); err != nil {
		return nil, m, err
	}
	if v.Status == statusPending {
		return nil, m, logical.CodedError(409, fmt.Sprintf("%s has no active key yet: version %d (selector %s) awaits activation; "+
			"publish its record (see %s/dns), then it activates, or activate it with %s/activate", ref.path(), v.Version, m.Selector, ref.path(), ref.path()))
	}
	return v, m, nil
}

// dkimSignWith signs one message with version v's keys and returns what a
// sign answers. Keys come parsed from the mount's signer cache.
func (b *backend) dkimSignWith(e *secretEntry, v *secretVersion, m dkimMaterial, encoded string, opts *dkim.SignOptions, algorithm string) (map[string]interface{}, error) {
	parts, err := signingParts(m, algorithm)
	if err != nil {
		return nil, err
	}
	var headers []interface{}
	var all strings.Builder
	for _, p := range parts {
		signer, err := b.signers.signer(p.PrivateKey)
		if err != nil {
			return nil, err
		}
		o := *opts
		o.Signer, o.Domain, o.Selector = signer, e.Name, p.Selector
		header, err := dkimkey.Sign(encoded, &o)
		if err != nil {
			return nil, err
		}
		headers = append(headers, header)
		all.WriteString(header)
	}
	data := map[string]interface{}{
		"dkim_signature": all.String(), "domain": e.Name, "selector": parts[0].Selector,
		"version": v.Version, "key_type": parts[0].KeyType,
	}
	if len(parts) > 1 || m.Companion != nil {
		data["dkim_signatures"] = headers
		sels := []interface{}{}
		for _, p := range parts {
			sels = append(sels, p.Selector)
		}
		data["selectors"] = sels
	}
	return data, nil
}

// signingParts picks the keys a sign uses: the version's own key, its
// Ed25519 companion, or both (RSA first).
func signingParts(m dkimMaterial, algorithm string) ([]dkimKeyPart, error) {
	parts := m.parts()
	switch algorithm {
	case "", "rsa", "primary":
		if algorithm == "rsa" && !strings.HasPrefix(m.KeyType, "rsa-") {
			return nil, badInput("algorithm rsa: this domain's key is %s", m.KeyType)
		}
		return parts[:1], nil
	case "ed25519":
		if m.KeyType == "ed25519" {
			return parts[:1], nil
		}
		if m.Companion == nil {
			return nil, badInput("algorithm ed25519: this domain has no Ed25519 key (create it with dual_algorithm=true)")
		}
		return parts[1:], nil
	case "both":
		if m.Companion == nil {
			return nil, badInput("algorithm both: this domain has one key (create it with dual_algorithm=true)")
		}
		return parts, nil
	}
	return nil, badInput("invalid algorithm %s: must be rsa, ed25519 or both", quoteShort(algorithm))
}

// dkimPrivate answers {domain}/private with a version's PEM private key,
// unless the secret was made with exportable=false.
func dkimPrivate(e *secretEntry, ref secretRef, d *framework.FieldData) (*logical.Response, error) {
	settings, err := dkimSettingsOf(e)
	if err != nil {
		return nil, err
	}
	if !settings.Exportable {
		return nil, badInput("the private key of %s cannot be exported: it was created with exportable=false (sign with %s/sign instead)", ref.path(), ref.path())
	}
	v, err := pickVersion(e, d.Get("version").(int))
	if err != nil {
		return nil, err
	}
	var m dkimMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return nil, err
	}
	if err := refuseRevoked(ref, v, m); err != nil {
		return nil, err
	}
	parts, err := signingParts(m, strings.TrimSpace(d.Get("algorithm").(string)))
	if err != nil || len(parts) != 1 {
		if err == nil {
			err = badInput("algorithm both: export one key at a time (rsa or ed25519)")
		}
		return nil, err
	}
	p := parts[0]
	if p.PrivateKey == "" {
		return nil, notFound("version %d (selector %s) of %s has no private key: it was destroyed when its grace period ended", v.Version, p.Selector, ref.path())
	}
	return &logical.Response{Data: map[string]interface{}{
		"private_key": p.PrivateKey, "domain": e.Name, "selector": p.Selector,
		"key_type": p.KeyType, "version": v.Version, "record_name": dkimkey.RecordName(p.Selector, e.Name),
	}}, nil
}

const dkimHelp = `
The DKIM signing key of one domain. The secret's name is the domain
(d=) in its one spelling: lowercase, no trailing dot, a Unicode name as its
IDNA punycode. Another spelling is a 400 naming the canonical path. A domain
belongs to one tenant across the mount (see dkim-domains/{domain}).

  vault write -f penguinmails/dkim/tenant-1/example.com
  vault write penguinmails/dkim/tenant-1/example.com key_type=ed25519 selector=mail1
  vault read  penguinmails/dkim/tenant-1/example.com
  vault write penguinmails/dkim/tenant-1/example.com/rotate reason="yearly rotation"

A write with no fields generates an rsa-2048 key (the CLI needs -f for a
write without fields). Every key version has its
own selector, given or generated from selector_prefix and the month
(pm202611, then pm202611-2 in the same month). The answer, like a read, gives
the record to publish: record_name {selector}._domainkey.{domain} and
txt_value "v=DKIM1; k=rsa; p=..." (k=ed25519 for ed25519 keys), also split into
txt_strings of at most 255 bytes. No read ever returns the private key; see
{domain}/private.

A new key is "pending" until it is activated: listed under publish in
{domain}/dns, never used by sign. It activates when the resolvers return its
record (activation=dns), after dkim_publish_lead (delay, the default), at
once (immediate), or with {domain}/activate. Only then does the previous key
become "retiring": still published and valid for verification for
dkim_grace_period (config, default 48h). Then it is "retired": its private
key is deleted from storage, and its record is listed as revoked
(v=DKIM1; p=) for dkim_revocation_period before it is listed for removal. A
write with a different key_type or selector on an existing key is a
rotation too.
`

const dkimDNSHelp = `
Lists the DNS TXT records of the domain's keys. "publish" holds the pending
key (publish it now: it activates once visible), the active one and the
retiring ones (keep them until their grace_until has passed); "revoke" holds
revoked keys and keys whose overlap ended less than dkim_revocation_period
ago, whose record must read "v=DKIM1; p=" (an empty p= means revoked,
RFC 6376 3.6.1); "remove" holds older ones whose records can be deleted.
With check=true each record also says what every configured resolver
returns: published, missing, mismatch (with the difference), revoked or
error.
Each record has name, type, value and txt_strings (value cut into strings of
at most 255 bytes, for DNS servers that need it).
`

const dkimSignHelp = `
Signs a message with the active key and returns dkim_signature: the complete
DKIM-Signature header field (folded, ending with CRLF) to put in front of the
message unchanged. The private key never leaves Vault; a policy may grant
update on this path and deny {domain}/private.

  vault write penguinmails/dkim/tenant-1/example.com/sign message="$(base64 -w0 mail.eml)"
  vault write penguinmails/dkim/tenant-1/example.com/sign message=@mail.b64 \
      headers=from,to,subject,date canonicalization=simple/simple
`

const dkimPrivateHelp = `
Returns a version's private key in PKCS#8 PEM (private_key) for MTAs that
sign themselves (OpenDKIM, Postfix, KumoMTA), with its selector and record
name. Exporting is an update (POST/PUT); a read is no operation here.

  vault write -f -field=private_key penguinmails/dkim/tenant-1/example.com/private

A key created with exportable=false is refused, whatever the policy. A
retired version has no private key any more (404); a revoked one neither
(409, rotate for a new key).
`
