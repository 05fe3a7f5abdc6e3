package penguinmails

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// DKIM version statuses: a replaced key stays published (retiring) through
// the DNS grace period so that mail signed with it still verifies, then it is
// retired and its private key is destroyed.
const (
	dkimStatusRetiring = "retiring"
	dkimStatusRetired  = "retired"
)

// dkimSettings apply to the whole secret.
type dkimSettings struct {
	// KeyType is the type of the current key and of the keys rotation makes.
	KeyType string `json:"key_type"`
	// Exportable false is for ever: such a key can sign but never be read.
	Exportable     bool   `json:"exportable"`
	SelectorPrefix string `json:"selector_prefix"`
	// UsedSelectors are the selectors of every key this secret has had, also
	// of versions max_versions has dropped: a selector is never reused, since
	// DNS caches and mail in transit may still tie it to the old key.
	UsedSelectors []string `json:"used_selectors,omitempty"`
}

// dkimMaterial is one key version. Each version has its own selector, so
// the old and the new key can be published side by side.
type dkimMaterial struct {
	Selector  string `json:"selector"`
	KeyType   string `json:"key_type"`
	PublicKey string `json:"public_key"`
	// PrivateKey is PKCS#8 PEM; it is emptied when the grace period ends.
	PrivateKey string `json:"private_key,omitempty"`
}

func dkimKind() *secretKind {
	return &secretKind{
		Name:          "dkim",
		Title:         "DKIM key",
		policy:        func(c *engineConfig) typePolicy { return c.DKIM },
		paths:         pathDKIM,
		generate:      generateDKIMVersion,
		graceStatus:   dkimStatusRetiring,
		afterGrace:    dkimStatusRetired,
		onGraceEnd:    destroyDKIMPrivateKey,
		normalizeName: normalizeDomain,
		nameRule:      "The signing domain (d=), for example example.com. It " + dkimDomainRule + ".",
	}
}

func pathDKIM(b *backend, k *secretKind) []*framework.Path {
	fields := map[string]*framework.FieldSchema{
		"key_type": {Type: framework.TypeString,
			Description: "Key algorithm: rsa-2048 (default), rsa-3072, rsa-4096 or ed25519 (RFC 8463). RSA below 2048 bits is refused. " +
				"On an existing key, a different key_type makes a new key with a new selector (the old one retires after the grace period)."},
		"selector": {Type: framework.TypeString,
			Description: "Selector of the new key, one DNS label, unique within the domain. Left out, one is made from selector_prefix and the month (pm202611, pm202611-2, ...). " +
				"On an existing key, a different selector makes a new key."},
		"selector_prefix": {Type: framework.TypeString,
			Description: fmt.Sprintf("Prefix of generated selectors (default %q), 1-%d lowercase letters, digits or hyphens.", dkimDefaultSelectorPrefix, maxSelectorPrefix)},
		"exportable": {Type: framework.TypeBool, Default: true,
			Description: "Whether the private key can be read at {domain}/private (default true). Once false it can never be turned on again; the key can still sign."},
	}
	return []*framework.Path{
		secretPath(b, k, fields, writeDKIM, viewDKIM, "Create, read, update and delete the DKIM key of a domain.", dkimHelp),
		dkimSubPath(b, k, "dns", logical.ReadOperation, dkimDNS, nil,
			"DNS records of a domain's DKIM keys: to publish now, and safe to remove.", dkimDNSHelp),
		dkimSubPath(b, k, "sign", logical.UpdateOperation, dkimSign, dkimSignFields(),
			"Sign a message with the domain's active DKIM key and return the DKIM-Signature header.", dkimSignHelp),
		dkimSubPath(b, k, "private", logical.ReadOperation, dkimPrivate, map[string]*framework.FieldSchema{
			"version": {Type: framework.TypeInt, Query: true,
				Description: "Version whose private key to return; 0 or unset means the active one."},
		}, "Export a DKIM private key (PEM) for MTAs that sign by themselves.", dkimPrivateHelp),
	}
}

// dkimSubPath builds a {tenant}/{domain}/{suffix} path with one operation.
// None of them writes storage, so none is forwarded to the active node.
func dkimSubPath(b *backend, k *secretKind, suffix string, op logical.Operation, fn entryHandler,
	extra map[string]*framework.FieldSchema, synopsis, description string) *framework.Path {
	p := secretSubPath(k, suffix, extra)
	p.Operations = map[logical.Operation]framework.OperationHandler{
		op: &framework.PathOperation{Callback: b.handle(b.onEntry(k, fn)), Summary: synopsis},
	}
	p.HelpSynopsis, p.HelpDescription = synopsis, strings.TrimSpace(description)
	return p
}

// dkimSignPattern is the sign path's pattern; the forwarding test lists it
// among the update operations that write nothing.
var dkimSignPattern = secretSubPattern("dkim", "sign")

// dkimSettingsOf decodes a secret's settings, or returns the defaults for a
// secret being created.
func dkimSettingsOf(e *secretEntry) (dkimSettings, error) {
	s := dkimSettings{KeyType: dkimDefaultKeyType, Exportable: true, SelectorPrefix: dkimDefaultSelectorPrefix}
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
}

// dkimChangeFrom validates every field of a write against the current
// secret. cur is the active version's material (zero when creating).
func dkimChangeFrom(d *framework.FieldData, e *secretEntry, cur dkimMaterial) (dkimChange, error) {
	creating := e.current() == nil
	settings, err := dkimSettingsOf(e)
	if err != nil {
		return dkimChange{}, err
	}
	c := dkimChange{settings: settings, newKey: creating}
	if v, ok := d.GetOk("key_type"); ok {
		t, err := parseDKIMKeyType(v.(string))
		if err != nil {
			return c, err
		}
		c.newKey = c.newKey || t.name != cur.KeyType
		c.settings.KeyType = t.name
	}
	if v, ok := d.GetOk("selector_prefix"); ok {
		if c.settings.SelectorPrefix, err = validateSelectorPrefix(v.(string)); err != nil {
			return c, err
		}
	}
	if v, ok := d.GetOk("exportable"); ok {
		if v.(bool) && !settings.Exportable && !creating {
			return c, badInput("exportable cannot be turned on: this key was created with exportable=false, and such a key can never be exported")
		}
		c.settings.Exportable = v.(bool)
	}
	if v, ok := d.GetOk("selector"); ok {
		s, err := validateSelector("selector", v.(string))
		if err != nil {
			return c, err
		}
		if s == cur.Selector && !c.newKey {
			return c, nil // the active key already has it
		}
		if n := versionWithSelector(e, s); n > 0 {
			return c, badInput("invalid selector %q: version %d of %s already uses it; selectors are unique per domain", s, n, e.Name)
		}
		if selectorUsed(settings, s) {
			return c, badInput("invalid selector %q: an earlier version of %s used it; selectors are unique per domain", s, e.Name)
		}
		c.selector, c.newKey = s, true
	}
	return c, nil
}

// writeDKIM creates a key, or updates settings; a new key_type or selector
// on an existing secret makes a new key, recorded as a rotation.
func writeDKIM(_ context.Context, b *backend, req *logical.Request, d *framework.FieldData, e *secretEntry, cfg *engineConfig, now time.Time) error {
	creating := e.current() == nil
	var cur dkimMaterial
	if !creating {
		if err := decodeMaterial(e.current(), &cur); err != nil {
			return err
		}
	}
	c, err := dkimChangeFrom(d, e, cur)
	if err != nil {
		return err
	}
	var material dkimMaterial
	if c.newKey {
		if material, err = newDKIMMaterial(b, e, c.settings, c.selector, now); err != nil {
			return err
		}
		rememberSelectors(&c.settings, e, material.Selector)
	}
	raw, err := json.Marshal(c.settings)
	if err != nil {
		return err
	}
	// Everything is validated and generated: only now is the entry changed.
	e.Settings = raw
	switch {
	case creating:
		e.LastRotated = now
		return e.addVersion(material, actorOf(req), now, e.kindOf(b), cfg)
	case c.newKey:
		r := rotation{Trigger: triggerManual, Reason: "new key_type or selector written", Actor: actorOf(req)}
		return e.rotateTo(material, e.kindOf(b), cfg, r, now)
	}
	return nil
}

// generateDKIMVersion makes a rotated version: a new key of the secret's
// key_type under a new generated selector.
func generateDKIMVersion(_ context.Context, b *backend, e *secretEntry, _ *engineConfig, now time.Time) (interface{}, error) {
	settings, err := dkimSettingsOf(e)
	if err != nil {
		return nil, err
	}
	m, err := newDKIMMaterial(b, e, settings, "", now)
	if err != nil {
		return nil, err
	}
	// The caller saves e only when the rotation succeeds.
	rememberSelectors(&settings, e, m.Selector)
	raw, err := json.Marshal(settings)
	if err != nil {
		return nil, err
	}
	e.Settings = raw
	return m, nil
}

// selectorUsed reports whether a version of the secret, kept or dropped, had
// selector.
func selectorUsed(s dkimSettings, selector string) bool {
	for _, u := range s.UsedSelectors {
		if u == selector {
			return true
		}
	}
	return false
}

// rememberSelectors adds the kept versions' selectors and the new one to
// s.UsedSelectors (entries written before it existed have none).
func rememberSelectors(s *dkimSettings, e *secretEntry, selector string) {
	add := func(sel string) {
		if sel != "" && !selectorUsed(*s, sel) {
			s.UsedSelectors = append(s.UsedSelectors, sel)
		}
	}
	for i := range e.Versions {
		var m dkimMaterial
		if decodeMaterial(&e.Versions[i], &m) == nil {
			add(m.Selector)
		}
	}
	add(selector)
}

// newDKIMMaterial generates a key under selector, or under a generated one
// when selector is empty.
func newDKIMMaterial(b *backend, e *secretEntry, s dkimSettings, selector string, now time.Time) (dkimMaterial, error) {
	t, err := parseDKIMKeyType(s.KeyType)
	if err != nil {
		return dkimMaterial{}, err
	}
	if selector == "" {
		selector = nextSelector(s.SelectorPrefix, now, func(c string) bool { return versionWithSelector(e, c) > 0 || selectorUsed(s, c) })
	}
	if n := len(dkimRecordName(selector, e.Name)); n > maxDNSName {
		return dkimMaterial{}, badInput("invalid domain %s with selector %q: the record name {selector}._domainkey.{domain} would be %d characters, DNS allows %d",
			quoteShort(e.Name), selector, n, maxDNSName)
	}
	pair, err := generateDKIMKey(b.GetRandomReader(), t)
	if err != nil {
		return dkimMaterial{}, err
	}
	return dkimMaterial{Selector: selector, KeyType: t.name, PublicKey: pair.publicB64, PrivateKey: pair.privatePEM}, nil
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

// destroyDKIMPrivateKey is the onGraceEnd hook: a retired key keeps its
// public part (history, DNS clean-up) and loses its private key.
func destroyDKIMPrivateKey(v *secretVersion) error {
	var m dkimMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return err
	}
	m.PrivateKey = ""
	raw, err := json.Marshal(m)
	if err != nil {
		return err
	}
	v.Material = raw
	return nil
}

// dkimRecord is the DNS view of one version's key.
func dkimRecord(domain string, v *secretVersion, m dkimMaterial) map[string]interface{} {
	value := dkimTXTValue(m.KeyType, m.PublicKey)
	rec := map[string]interface{}{
		"version":     v.Version,
		"status":      v.Status,
		"selector":    m.Selector,
		"key_type":    m.KeyType,
		"name":        dkimRecordName(m.Selector, domain),
		"type":        "TXT",
		"value":       value,
		"txt_strings": splitTXT(value),
	}
	if !v.GraceUntil.IsZero() {
		rec["grace_until"] = formatTime(v.GraceUntil)
	}
	return rec
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
	value := dkimTXTValue(m.KeyType, m.PublicKey)
	out := map[string]interface{}{
		"domain":          e.Name,
		"selector":        m.Selector,
		"active_selector": active.Selector,
		"key_type":        m.KeyType,
		"public_key":      m.PublicKey,
		"record_name":     dkimRecordName(m.Selector, e.Name),
		"txt_value":       value,
		"txt_strings":     splitTXT(value),
		"exportable":      settings.Exportable,
		"selector_prefix": settings.SelectorPrefix,
		"has_private_key": m.PrivateKey != "",
		// Replaces the shared versions map with one that also names each
		// version's selector and record.
		"versions": versions,
	}
	if u := unicodeDomain(e.Name); u != "" {
		out["domain_unicode"] = u
	}
	return out, nil
}

func dkimVersionsView(e *secretEntry) (map[string]interface{}, error) {
	out := e.versionsView()
	for i := range e.Versions {
		v := &e.Versions[i]
		var m dkimMaterial
		if err := decodeMaterial(v, &m); err != nil {
			return nil, err
		}
		item := out[fmt.Sprint(v.Version)].(map[string]interface{})
		item["selector"] = m.Selector
		item["key_type"] = m.KeyType
		item["record_name"] = dkimRecordName(m.Selector, e.Name)
		item["has_private_key"] = m.PrivateKey != ""
	}
	return out, nil
}

// dkimDNS answers {domain}/dns: the records of the active and retiring keys
// (publish) and of the retired ones still kept (remove), newest first.
func dkimDNS(e *secretEntry, _ secretRef, _ *framework.FieldData) (*logical.Response, error) {
	publish, remove := []interface{}{}, []interface{}{}
	for i := len(e.Versions) - 1; i >= 0; i-- {
		v := &e.Versions[i]
		var m dkimMaterial
		if err := decodeMaterial(v, &m); err != nil {
			return nil, err
		}
		if v.Status == statusActive || v.Status == dkimStatusRetiring {
			publish = append(publish, dkimRecord(e.Name, v, m))
		} else {
			remove = append(remove, dkimRecord(e.Name, v, m))
		}
	}
	return &logical.Response{Data: map[string]interface{}{
		"domain": e.Name, "publish": publish, "remove": remove,
	}}, nil
}

// activeDKIMKey returns the active version and its material.
func activeDKIMKey(e *secretEntry) (*secretVersion, dkimMaterial, error) {
	var m dkimMaterial
	v := e.current()
	if v == nil {
		return nil, m, fmt.Errorf("dkim/%s/%s has no current version", e.Tenant, e.Name)
	}
	return v, m, decodeMaterial(v, &m)
}

// dkimDefaultHeaders are signed when the request names none: the fields
// RFC 6376 5.4.1 recommends. A name absent from the message is still listed
// in h=, so that adding that field later breaks the signature.
var dkimDefaultHeaders = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
}

const dkimDefaultCanonicalization = "relaxed/relaxed"

func dkimSignFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"message": {Type: framework.TypeString, Required: true,
			Description: "The RFC 5322 message (header, empty line, body), base64-encoded (standard alphabet; line breaks are ignored)."},
		"headers": {Type: framework.TypeCommaStringSlice,
			Description: "Header fields to sign (h=); must include From. Default: " + strings.Join(dkimDefaultHeaders, ", ") + "."},
		"canonicalization": {Type: framework.TypeString, Default: dkimDefaultCanonicalization,
			Description: "header/body canonicalization (c=), each simple or relaxed (default relaxed/relaxed). One name alone sets the header algorithm; the body then uses simple (RFC 6376 3.5)."},
	}
}

// dkimSignOptionsFrom validates a sign request. Domain, selector and key are
// filled in from the stored secret by the caller.
func dkimSignOptionsFrom(d *framework.FieldData) (*dkim.SignOptions, []byte, error) {
	encoded := strings.Join(strings.Fields(d.Get("message").(string)), "")
	if encoded == "" {
		return nil, nil, badInput("message is required: the base64 of an RFC 5322 message")
	}
	msg, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return nil, nil, badInput("invalid message: not standard base64 (%v)", err)
	}
	opts := &dkim.SignOptions{HeaderKeys: dkimDefaultHeaders}
	if opts.HeaderCanonicalization, opts.BodyCanonicalization, err = parseCanonicalization(d.Get("canonicalization").(string)); err != nil {
		return nil, nil, err
	}
	if v, ok := d.GetOk("headers"); ok {
		if opts.HeaderKeys, err = parseSignedHeaders(v.([]string)); err != nil {
			return nil, nil, err
		}
	}
	return opts, msg, nil
}

func parseCanonicalization(value string) (dkim.Canonicalization, dkim.Canonicalization, error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(value)), "/")
	if len(parts) == 1 {
		parts = append(parts, string(dkim.CanonicalizationSimple))
	}
	ok := func(s string) bool {
		return s == string(dkim.CanonicalizationSimple) || s == string(dkim.CanonicalizationRelaxed)
	}
	if len(parts) != 2 || !ok(parts[0]) || !ok(parts[1]) {
		return "", "", badInput("invalid canonicalization %s: must be header/body with each simple or relaxed, for example relaxed/relaxed", quoteShort(value))
	}
	return dkim.Canonicalization(parts[0]), dkim.Canonicalization(parts[1]), nil
}

func parseSignedHeaders(names []string) ([]string, error) {
	out := make([]string, 0, len(names))
	hasFrom := false
	for _, n := range names {
		n = strings.TrimSpace(n)
		if !headerNameRe.MatchString(n) {
			return nil, badInput("invalid headers entry %s: a header field name is printable ASCII without spaces or colons", quoteShort(n))
		}
		hasFrom = hasFrom || strings.EqualFold(n, "From")
		out = append(out, n)
	}
	if !hasFrom {
		return nil, badInput("invalid headers: From must be signed (RFC 6376 5.4)")
	}
	return out, nil
}

// dkimSign answers {domain}/sign. It reads storage only: the signature is
// made with the active key and nothing is recorded, so performance standbys
// serve it themselves.
func dkimSign(e *secretEntry, _ secretRef, d *framework.FieldData) (*logical.Response, error) {
	opts, msg, err := dkimSignOptionsFrom(d)
	if err != nil {
		return nil, err
	}
	v, m, err := activeDKIMKey(e)
	if err != nil {
		return nil, err
	}
	if opts.Signer, err = parseDKIMPrivateKey(m.PrivateKey); err != nil {
		return nil, err
	}
	opts.Domain, opts.Selector = e.Name, m.Selector
	header, err := signDKIM(msg, opts)
	if err != nil {
		return nil, err
	}
	return &logical.Response{Data: map[string]interface{}{
		"dkim_signature": header, "domain": e.Name, "selector": m.Selector,
		"version": v.Version, "key_type": m.KeyType,
	}}, nil
}

// signDKIM returns the DKIM-Signature header field, folded and ending in
// CRLF, ready to be put in front of the message as it is.
func signDKIM(msg []byte, opts *dkim.SignOptions) (string, error) {
	s, err := dkim.NewSigner(opts)
	if err != nil {
		return "", fmt.Errorf("dkim signer: %w", err)
	}
	_, werr := s.Write(msg)
	// Close must run in every case; it reports what went wrong in the
	// signer, which reads the header first: errors here are the message's.
	if cerr := s.Close(); cerr != nil || werr != nil {
		if cerr == nil {
			cerr = werr
		}
		return "", badInput("invalid message: not an RFC 5322 message (header fields, an empty line, then the body): %v", cerr)
	}
	return s.Signature(), nil
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
	if m.PrivateKey == "" {
		return nil, notFound("version %d (selector %s) of %s has no private key: it was destroyed when its grace period ended", v.Version, m.Selector, ref.path())
	}
	return &logical.Response{Data: map[string]interface{}{
		"private_key": m.PrivateKey, "domain": e.Name, "selector": m.Selector,
		"key_type": m.KeyType, "version": v.Version, "record_name": dkimRecordName(m.Selector, e.Name),
	}}, nil
}

const dkimHelp = `
The DKIM signing key of one domain. The secret's name is the domain
(d=), lowercased; a Unicode name is stored as IDNA punycode.

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

On rotation the new key is active at once; the previous one is "retiring":
still published and valid for verification for dkim_grace_period (config,
default 48h). Then it is "retired": its private key is deleted from storage
and its public part stays in the version list. A write with a different
key_type or selector on an existing key is a rotation too.
`

const dkimDNSHelp = `
Lists the DNS TXT records of the domain's keys. "publish" holds the active
key and the retiring ones (keep them in DNS until their grace_until has
passed); "remove" holds retired keys whose records can be deleted.
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
name. A key created with exportable=false is refused, whatever the policy.
A retired version has no private key any more (404).
`
