// Package dkimkey holds the DKIM rules that need no Vault sdk: key types and
// generation, the public key as p= encodes it, PKCS#8 parsing, record names
// and TXT values, the canonical checks of domains and selectors, the header
// name rule of h=, and the streaming input of a signature. The engine keeps
// the Vault glue (paths, storage); every refusal here is an *inputerr.Error
// whose message names the field and the rule.
package dkimkey

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

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

// KeyType is one key algorithm a DKIM key may use. RSABits is 0 for ed25519
// (RFC 8463).
type KeyType struct {
	Name    string
	RSABits int
}

// DefaultKeyType is used when a write names none.
const DefaultKeyType = "rsa-2048"

// keyTypes are the accepted key_type values. RSA starts at 2048 bits: RFC
// 8301 makes 1024 the floor for verifiers, and the platform uses 2048.
var keyTypes = []KeyType{
	{"rsa-2048", 2048}, {"rsa-3072", 3072}, {"rsa-4096", 4096}, {"ed25519", 0},
}

// KeyTypeNames lists the accepted key_type values.
func KeyTypeNames() []string {
	names := make([]string, len(keyTypes))
	for i, t := range keyTypes {
		names[i] = t.Name
	}
	return names
}

// rsaSizeRe recognises an RSA key type with a size, to explain why a small
// one is refused rather than only listing the accepted values.
var rsaSizeRe = regexp.MustCompile(`^rsa-?(\d+)$`)

// ParseKeyType checks a key_type value.
func ParseKeyType(value string) (KeyType, error) {
	v := strings.ToLower(strings.TrimSpace(value))
	for _, t := range keyTypes {
		if t.Name == v {
			return t, nil
		}
	}
	if rsaSizeRe.MatchString(v) {
		return KeyType{}, inputerr.New("invalid key_type %s: RSA keys must be at least 2048 bits; use one of %s",
			inputerr.Quote(value), strings.Join(KeyTypeNames(), ", "))
	}
	return KeyType{}, inputerr.New("invalid key_type %s: must be one of %s", inputerr.Quote(value), strings.Join(KeyTypeNames(), ", "))
}

// KeyPair is a generated key: the private key as PKCS#8 PEM and the public
// key as it goes into the DNS record's p= tag.
type KeyPair struct {
	PrivatePEM string
	PublicB64  string
}

// Generate makes a new key of type t. Since Go 1.26 crypto/rsa draws from
// the system's secure source whatever reader it is given; ed25519 uses the
// reader.
func Generate(random io.Reader, t KeyType) (KeyPair, error) {
	var priv crypto.Signer
	if t.RSABits > 0 {
		k, err := rsa.GenerateKey(random, t.RSABits)
		if err != nil {
			return KeyPair{}, fmt.Errorf("generating %s key: %w", t.Name, err)
		}
		priv = k
	} else {
		_, k, err := ed25519.GenerateKey(random)
		if err != nil {
			return KeyPair{}, fmt.Errorf("generating ed25519 key: %w", err)
		}
		priv = k
	}
	return pairOf(priv, t)
}

// pairOf is a private key as the engine stores it: PKCS#8 PEM, and the
// p= value of its record. Generated and imported keys both go through it.
func pairOf(priv crypto.Signer, t KeyType) (KeyPair, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return KeyPair{}, fmt.Errorf("encoding %s private key: %w", t.Name, err)
	}
	pub, err := PublicKey(priv.Public())
	if err != nil {
		return KeyPair{}, err
	}
	return KeyPair{
		PrivatePEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		PublicB64:  pub,
	}, nil
}

// PublicKey encodes a public key for p=: an RSA key as the base64 of its
// SubjectPublicKeyInfo DER (RFC 6376 3.6.1), an ed25519 key as the base64 of
// its 32 raw bytes (RFC 8463 4.2).
func PublicKey(pub crypto.PublicKey) (string, error) {
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

// ParsePrivateKey decodes a stored PKCS#8 PEM key. Errors never quote the
// key.
func ParsePrivateKey(pemText string) (crypto.Signer, error) {
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
