package penguinmails

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"golang.org/x/net/idna"
)

// This file holds the DKIM key and DNS record helpers; path_dkim.go holds the
// paths that use them.

// dkimKeyType is one key algorithm a DKIM key may use. rsaBits is 0 for
// ed25519 (RFC 8463).
type dkimKeyType struct {
	name    string
	rsaBits int
}

const dkimDefaultKeyType = "rsa-2048"

// dkimKeyTypes are the accepted key_type values. RSA starts at 2048 bits:
// RFC 8301 makes 1024 the floor for verifiers, and the platform uses 2048.
var dkimKeyTypes = []dkimKeyType{
	{"rsa-2048", 2048}, {"rsa-3072", 3072}, {"rsa-4096", 4096}, {"ed25519", 0},
}

func dkimKeyTypeNames() []string {
	names := make([]string, len(dkimKeyTypes))
	for i, t := range dkimKeyTypes {
		names[i] = t.name
	}
	return names
}

// rsaSizeRe recognises an RSA key type with a size, to explain why a small
// one is refused rather than only listing the accepted values.
var rsaSizeRe = regexp.MustCompile(`^rsa-?(\d+)$`)

func parseDKIMKeyType(value string) (dkimKeyType, error) {
	v := strings.ToLower(strings.TrimSpace(value))
	for _, t := range dkimKeyTypes {
		if t.name == v {
			return t, nil
		}
	}
	if m := rsaSizeRe.FindStringSubmatch(v); m != nil {
		return dkimKeyType{}, badInput("invalid key_type %s: RSA keys must be at least 2048 bits; use one of %s",
			quoteShort(value), strings.Join(dkimKeyTypeNames(), ", "))
	}
	return dkimKeyType{}, badInput("invalid key_type %s: must be one of %s", quoteShort(value), strings.Join(dkimKeyTypeNames(), ", "))
}

// dkimKeyPair is a generated key: the private key as PKCS#8 PEM and the
// public key as it goes into the DNS record's p= tag.
type dkimKeyPair struct {
	privatePEM string
	publicB64  string
}

// generateDKIMKey makes a new key of type t. Since Go 1.26 crypto/rsa draws
// from the system's secure source whatever reader it is given; ed25519 uses
// the reader, which is Vault's entropy-augmented one.
func generateDKIMKey(random io.Reader, t dkimKeyType) (dkimKeyPair, error) {
	var priv crypto.Signer
	if t.rsaBits > 0 {
		k, err := rsa.GenerateKey(random, t.rsaBits)
		if err != nil {
			return dkimKeyPair{}, fmt.Errorf("generating %s key: %w", t.name, err)
		}
		priv = k
	} else {
		_, k, err := ed25519.GenerateKey(random)
		if err != nil {
			return dkimKeyPair{}, fmt.Errorf("generating ed25519 key: %w", err)
		}
		priv = k
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return dkimKeyPair{}, fmt.Errorf("encoding %s private key: %w", t.name, err)
	}
	pub, err := dkimPublicKey(priv.Public())
	if err != nil {
		return dkimKeyPair{}, err
	}
	return dkimKeyPair{
		privatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		publicB64:  pub,
	}, nil
}

// dkimPublicKey encodes a public key for p=: an RSA key as the base64 of its
// SubjectPublicKeyInfo DER (RFC 6376 3.6.1), an ed25519 key as the base64 of
// its 32 raw bytes (RFC 8463 4.2).
func dkimPublicKey(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return base64.StdEncoding.EncodeToString(k), nil
	case *rsa.PublicKey:
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			return "", fmt.Errorf("encoding RSA public key: %w", err)
		}
		return base64.StdEncoding.EncodeToString(der), nil
	default:
		return "", fmt.Errorf("unsupported DKIM public key type %T", pub)
	}
}

// parseDKIMPrivateKey decodes a stored PKCS#8 PEM key. Errors never quote the
// key.
func parseDKIMPrivateKey(pemText string) (crypto.Signer, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		return nil, errors.New("stored DKIM private key is not PEM")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, errors.New("stored DKIM private key is not valid PKCS#8")
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("stored DKIM private key has unsupported type %T", key)
	}
	return signer, nil
}

// dkimRecordName is where a selector's key is published.
func dkimRecordName(selector, domain string) string {
	return selector + "._domainkey." + domain
}

// dkimTXTValue is the key record: v=DKIM1; k=rsa|ed25519; p=<public key>.
func dkimTXTValue(keyType, publicB64 string) string {
	k := "rsa"
	if keyType == "ed25519" {
		k = "ed25519"
	}
	return "v=DKIM1; k=" + k + "; p=" + publicB64
}

// maxTXTString is the longest character-string a TXT record can hold
// (RFC 1035 3.3); longer values are published as several strings that
// verifiers concatenate (RFC 6376 3.6.2.2).
const maxTXTString = 255

func splitTXT(value string) []string {
	parts := make([]string, 0, len(value)/maxTXTString+1)
	for len(value) > maxTXTString {
		parts = append(parts, value[:maxTXTString])
		value = value[maxTXTString:]
	}
	return append(parts, value)
}

// DNS limits (RFC 1035 2.3.4).
const (
	maxDNSLabel = 63
	maxDNSName  = 253
)

var dnsLabelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

const dkimDomainRule = "must be a DNS domain name of at least two labels: letters, digits and hyphens " +
	"(no leading or trailing hyphen), each label at most 63 characters, the whole at most 253; " +
	"a Unicode name is converted to IDNA punycode"

// normalizeDomain returns the stored form of a DKIM domain: lowercased,
// without a trailing dot, Unicode converted to IDNA punycode (UTS #46 lookup
// rules). Every refusal is an input error naming the domain field.
func normalizeDomain(value string) (string, error) {
	name := strings.TrimSuffix(value, ".")
	if name == "" {
		return "", badInput("domain is required: %s", dkimDomainRule)
	}
	if !isASCII(name) {
		ascii, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", badInput("invalid domain %s: the Unicode name cannot be converted to IDNA punycode (%v)",
				quoteShort(value), err)
		}
		name = ascii
	}
	name = strings.ToLower(name)
	if len(name) > maxDNSName {
		return "", badInput("invalid domain %s: %d characters, a domain name is at most %d", quoteShort(value), len(name), maxDNSName)
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return "", badInput("invalid domain %s: %s", quoteShort(value), dkimDomainRule)
	}
	for _, l := range labels {
		if err := checkDomainLabel(value, l); err != nil {
			return "", err
		}
	}
	return name, nil
}

func checkDomainLabel(value, label string) error {
	switch {
	case len(label) > maxDNSLabel:
		return badInput("invalid domain %s: label %s is %d characters, a label is at most %d",
			quoteShort(value), quoteShort(label), len(label), maxDNSLabel)
	case !dnsLabelRe.MatchString(label):
		return badInput("invalid domain %s: label %s must be 1-%d letters, digits or hyphens, not starting or ending with a hyphen",
			quoteShort(value), quoteShort(label), maxDNSLabel)
	case strings.HasPrefix(label, "xn--"):
		// An A-label must decode to a valid Unicode label.
		if _, err := idna.Lookup.ToUnicode(label); err != nil {
			return badInput("invalid domain %s: label %s is not valid IDNA punycode (%v)", quoteShort(value), quoteShort(label), err)
		}
	}
	return nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// unicodeDomain is the display form of a punycode domain, or "" when it has
// none (all-ASCII labels).
func unicodeDomain(domain string) string {
	if !strings.Contains(domain, "xn--") {
		return ""
	}
	u, err := idna.Lookup.ToUnicode(domain)
	if err != nil {
		return ""
	}
	return u
}

// Selector rules. A generated selector is prefix + YYYYMM (+ "-N" when taken),
// so the prefix is bounded to keep it within one DNS label.
const (
	dkimDefaultSelectorPrefix = "pm"
	maxSelectorPrefix         = 40
)

const selectorRule = "must be one DNS label: 1-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen"

func validateSelector(field, value string) (string, error) {
	s := strings.ToLower(strings.TrimSpace(value))
	if len(s) > maxDNSLabel || !dnsLabelRe.MatchString(s) {
		return "", badInput("invalid %s %s: %s", field, quoteShort(value), selectorRule)
	}
	return s, nil
}

var selectorPrefixRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

func validateSelectorPrefix(value string) (string, error) {
	p := strings.ToLower(strings.TrimSpace(value))
	if len(p) > maxSelectorPrefix || !selectorPrefixRe.MatchString(p) {
		return "", badInput("invalid selector_prefix %s: must be 1-%d lowercase letters, digits or hyphens, starting with a letter or digit",
			quoteShort(value), maxSelectorPrefix)
	}
	return p, nil
}

// nextSelector is prefix + the month of now, with "-2", "-3", ... appended
// while that selector is taken, so two keys made in one month differ.
func nextSelector(prefix string, now time.Time, taken func(string) bool) string {
	base := prefix + now.UTC().Format("200601")
	s := base
	for n := 2; taken(s); n++ {
		s = fmt.Sprintf("%s-%d", base, n)
	}
	return s
}

// headerNameRe accepts a header field name (RFC 5322 2.2: printable ASCII
// except the colon).
var headerNameRe = regexp.MustCompile(`^[!-9;-~]+$`)
