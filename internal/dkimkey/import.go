package dkimkey

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"strings"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

// MaxImportPEM bounds an imported private key: an RSA-4096 key in PEM is
// about 3.3 KB, so 16 KiB leaves room for comments and headers.
const MaxImportPEM = 16 << 10

// Import checks a private key given to the engine (a key that already signs
// mail elsewhere, moved into Vault) and returns it as the engine stores
// generated keys: PKCS#8 PEM and the p= value, with its key type. It takes
// PKCS#1 ("RSA PRIVATE KEY") and PKCS#8 ("PRIVATE KEY") PEM of an RSA key of
// one of the accepted sizes, or of an Ed25519 key. Errors name the field
// private_key and never quote the key.
func Import(pemText string) (KeyPair, KeyType, error) {
	if len(pemText) > MaxImportPEM {
		return KeyPair{}, KeyType{}, inputerr.New("private_key is too long: at most %d bytes", MaxImportPEM)
	}
	block, rest := pem.Decode([]byte(strings.TrimSpace(pemText)))
	if block == nil {
		return KeyPair{}, KeyType{}, inputerr.New("invalid private_key: not PEM (expected -----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return KeyPair{}, KeyType{}, inputerr.New("invalid private_key: give one PEM block, found more after the first")
	}
	if x509.IsEncryptedPEMBlock(block) { //nolint:staticcheck // only to refuse legacy encrypted PEM clearly
		return KeyPair{}, KeyType{}, inputerr.New("invalid private_key: encrypted PEM is not accepted; decrypt it first (openssl pkey -in KEY -out PLAIN)")
	}
	signer, err := parseImported(block)
	if err != nil {
		return KeyPair{}, KeyType{}, err
	}
	t, err := keyTypeOf(signer)
	if err != nil {
		return KeyPair{}, KeyType{}, err
	}
	pair, err := pairOf(signer, t)
	return pair, t, err
}

func parseImported(block *pem.Block) (crypto.Signer, error) {
	switch block.Type {
	case "RSA PRIVATE KEY":
		k, err := x509.ParsePKCS1PrivateKey(block.Bytes)
		if err != nil {
			return nil, inputerr.New("invalid private_key: the RSA PRIVATE KEY block is not valid PKCS#1")
		}
		return k, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, inputerr.New("invalid private_key: the PRIVATE KEY block is not valid PKCS#8")
		}
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, inputerr.New("invalid private_key: unsupported key algorithm; DKIM keys are RSA or Ed25519")
	case "ENCRYPTED PRIVATE KEY":
		return nil, inputerr.New("invalid private_key: encrypted PKCS#8 is not accepted; decrypt it first (openssl pkey -in KEY -out PLAIN)")
	default:
		return nil, inputerr.New("invalid private_key: PEM block %s is not a private key (expected PRIVATE KEY or RSA PRIVATE KEY)", inputerr.Quote(block.Type))
	}
}

// keyTypeOf maps a parsed key to its key_type; RSA sizes outside the
// accepted ones are refused like a key_type of that size.
func keyTypeOf(k crypto.Signer) (KeyType, error) {
	switch key := k.(type) {
	case ed25519.PrivateKey:
		return ParseKeyType("ed25519")
	case *rsa.PrivateKey:
		bits := key.N.BitLen()
		for _, t := range keyTypes {
			if t.RSABits == bits {
				return t, nil
			}
		}
		return KeyType{}, inputerr.New("invalid private_key: an RSA key of %d bits; DKIM keys here are RSA 2048, 3072 or 4096 bits, or Ed25519", bits)
	default:
		return KeyType{}, inputerr.New("invalid private_key: unsupported key algorithm %T; DKIM keys are RSA or Ed25519", k)
	}
}
