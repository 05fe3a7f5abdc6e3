// Package dkimcheck holds the checks that the unit and the integration tests
// make on DKIM output. It verifies with go-msgauth and encodes keys with the
// standard library only, so that it stays independent of the engine's own
// DKIM code. Only tests import it.
package dkimcheck

import (
	"crypto"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
)

// Verify checks the one DKIM signature of a signed message, looking the key
// up only in records (record name -> TXT value), as a receiver would in DNS.
func Verify(records map[string]string, signed string) error {
	lookup := func(name string) ([]string, error) {
		if v, ok := records[name]; ok {
			return []string{v}, nil
		}
		return nil, fmt.Errorf("no TXT record at %s", name)
	}
	verifs, err := dkim.VerifyWithOptions(strings.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		return err
	}
	if len(verifs) != 1 {
		return fmt.Errorf("%d signatures, want 1", len(verifs))
	}
	return verifs[0].Err
}

// ParsePrivateKey parses a PKCS#8 PEM private key.
func ParsePrivateKey(pemText string) (crypto.Signer, error) {
	block, _ := pem.Decode([]byte(pemText))
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("not a PKCS#8 PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	return signer, nil
}

// PublicKeyTag encodes a public key as a DKIM record's p= tag: RSA as its
// SubjectPublicKeyInfo DER, ed25519 as its raw 32 bytes (RFC 8463).
func PublicKeyTag(pub crypto.PublicKey) (string, error) {
	if k, ok := pub.(ed25519.PublicKey); ok {
		return base64.StdEncoding.EncodeToString(k), nil
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(der), nil
}

// VerifyAll checks every DKIM signature of a signed message, looking keys
// up with lookup (a DNS resolver, say), and fails unless there are exactly
// want signatures and each verifies. It returns the selectors' domains and
// selectors as "s=... d=..." in signature order.
func VerifyAll(lookup func(name string) ([]string, error), signed string, want int) ([]string, error) {
	verifs, err := dkim.VerifyWithOptions(strings.NewReader(signed), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		return nil, err
	}
	if len(verifs) != want {
		return nil, fmt.Errorf("%d signatures, want %d", len(verifs), want)
	}
	var out []string
	for _, v := range verifs {
		if v.Err != nil {
			return nil, fmt.Errorf("signature of d=%s: %w", v.Domain, v.Err)
		}
		out = append(out, "d="+v.Domain)
	}
	return out, nil
}
