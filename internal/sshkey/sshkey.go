// Package sshkey is the engine's SSH key handling without the Vault sdk:
// generation, import parsing (with passphrases), the public-key match of an
// import, the stored encoding, export and fingerprints. The engine keeps
// only the Vault glue (paths, storage, versions). Refusals of the caller's
// input are *inputerr.Error values whose messages never quote a key or a
// passphrase.
package sshkey

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

// DefaultType is the key type generated when none is asked for.
const DefaultType = "ed25519"

// Types lists the key types that can be generated, in the order the help
// lists them.
func Types() []string { return append([]string(nil), types...) }

var types = []string{"ed25519", "rsa-4096", "rsa-3072", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521"}

var curves = map[string]elliptic.Curve{
	"ecdsa-p256": elliptic.P256(),
	"ecdsa-p384": elliptic.P384(),
	"ecdsa-p521": elliptic.P521(),
}

// RSA bounds. Below 3072 bits is refused (NIST SP 800-57 puts 2048 at the end
// of its life); above 8192 an import would make every rotation take minutes.
const (
	MinRSABits = 3072
	MaxRSABits = 8192
	// MaxInputLen bounds private_key and public_key input; an RSA-8192
	// key in PEM is about 6.5 KiB.
	MaxInputLen = 16 * 1024
)

// ValidateType checks a key_type asked for generation.
func ValidateType(keyType string) error {
	if bits, ok := rsaBitsOf(keyType); ok && bits < MinRSABits {
		return inputerr.New("invalid key_type %s: RSA keys must be at least %d bits; use rsa-3072, rsa-4096 or ed25519", inputerr.Quote(keyType), MinRSABits)
	}
	for _, t := range types {
		if keyType == t {
			return nil
		}
	}
	return inputerr.New("invalid key_type %s: must be one of %s", inputerr.Quote(keyType), strings.Join(types, ", "))
}

// rsaBitsOf parses "rsa-N".
func rsaBitsOf(keyType string) (int, bool) {
	rest, ok := strings.CutPrefix(keyType, "rsa-")
	if !ok {
		return 0, false
	}
	bits, err := strconv.Atoi(rest)
	return bits, err == nil
}

// Generate makes a new private key of keyType. keyType is one of
// types or, for a rotation of an imported RSA key, "rsa-N" within the
// accepted bounds. Since Go 1.26 RSA and ECDSA generation draw from the
// system CSPRNG whatever random is; Ed25519 uses random (Vault's entropy
// source when one is configured).
func Generate(keyType string, random io.Reader) (crypto.Signer, error) {
	if keyType == "ed25519" {
		_, priv, err := ed25519.GenerateKey(random)
		return priv, err
	}
	if curve, ok := curves[keyType]; ok {
		return ecdsa.GenerateKey(curve, random)
	}
	if bits, ok := rsaBitsOf(keyType); ok && bits >= MinRSABits && bits <= MaxRSABits {
		return rsa.GenerateKey(random, bits)
	}
	return nil, fmt.Errorf("cannot generate SSH key type %q", keyType)
}

// Info names a key the way key_type does and gives its size in bits.
// It refuses key kinds and sizes this engine does not serve.
func Info(key crypto.Signer) (keyType string, bits int, err error) {
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return "ed25519", 256, nil
	case *ecdsa.PrivateKey:
		bits = k.Curve.Params().BitSize
		for name, c := range curves {
			if c == k.Curve {
				return name, bits, nil
			}
		}
		return "", 0, inputerr.New("private_key is an ECDSA key on an unsupported curve: only P-256, P-384 and P-521 are accepted")
	case *rsa.PrivateKey:
		bits = k.N.BitLen()
		if bits < MinRSABits || bits > MaxRSABits {
			return "", 0, inputerr.New("private_key is a %d-bit RSA key: RSA keys must be %d to %d bits", bits, MinRSABits, MaxRSABits)
		}
		// The OpenSSH format holds two primes: a multi-prime key would be
		// stored as a key that no longer parses.
		if len(k.Primes) != 2 {
			return "", 0, inputerr.New("private_key is a multi-prime RSA key (%d primes): only two-prime RSA keys are accepted", len(k.Primes))
		}
		return fmt.Sprintf("rsa-%d", bits), bits, nil
	}
	return "", 0, inputerr.New("private_key is of an unsupported kind: only Ed25519, ECDSA (P-256, P-384, P-521) and RSA keys are accepted")
}

// ParsePrivate reads an OpenSSH or PEM (PKCS#1, PKCS#8, SEC 1) private
// key, decrypting it with passphrase when it is encrypted. Errors are input
// errors that never quote the key, the passphrase or the parser's message
// (which may describe the key's bytes).
func ParsePrivate(pemText, passphrase string) (crypto.Signer, error) {
	if strings.TrimSpace(pemText) == "" {
		return nil, inputerr.New("private_key is empty")
	}
	if len(pemText) > MaxInputLen {
		return nil, inputerr.New("private_key is too long: at most %d bytes", MaxInputLen)
	}
	if block, _ := pem.Decode([]byte(pemText)); block != nil && block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, inputerr.New("private_key is an encrypted PKCS#8 key, which is not supported: " +
			"convert it with `ssh-keygen -p -f FILE` (OpenSSH format) or send it unencrypted")
	}
	raw, err := ssh.ParseRawPrivateKey([]byte(pemText))
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passphrase == "" {
			return nil, inputerr.New("private_key is encrypted: passphrase is required")
		}
		if err := checkKDFRounds(pemText); err != nil {
			return nil, err
		}
		raw, err = ssh.ParseRawPrivateKeyWithPassphrase([]byte(pemText), []byte(passphrase))
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, inputerr.New("private_key cannot be decrypted: the passphrase is wrong")
		}
	}
	if err != nil {
		return nil, inputerr.New("private_key does not parse as an OpenSSH or PEM (PKCS#1, PKCS#8, SEC 1) private key")
	}
	// OpenSSH Ed25519 keys come back as a pointer; everything else uses values.
	if p, ok := raw.(*ed25519.PrivateKey); ok {
		raw = *p
	}
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return nil, inputerr.New("private_key is of an unsupported kind: only Ed25519, ECDSA (P-256, P-384, P-521) and RSA keys are accepted")
	}
	return signer, nil
}

// MaxKDFRounds bounds the bcrypt KDF rounds of an encrypted OpenSSH key.
// Decrypting costs about 7 ms of CPU per round; the x/crypto limit (2048,
// about 15 s) would let one import request hold a core of the process that
// serves every mount. ssh-keygen writes 16 by default.
const MaxKDFRounds = 128

// checkKDFRounds refuses an encrypted OpenSSH key whose KDF asks for more
// than MaxKDFRounds rounds, before any decryption is tried. Other formats,
// and envelopes that do not parse (the parser refuses those), pass.
func checkKDFRounds(pemText string) error {
	block, _ := pem.Decode([]byte(pemText))
	const magic = "openssh-key-v1\x00"
	if block == nil || block.Type != "OPENSSH PRIVATE KEY" || !bytes.HasPrefix(block.Bytes, []byte(magic)) {
		return nil
	}
	var envelope struct {
		CipherName string
		KdfName    string
		KdfOpts    string
		Rest       []byte `ssh:"rest"`
	}
	if err := ssh.Unmarshal(block.Bytes[len(magic):], &envelope); err != nil || envelope.KdfName != "bcrypt" {
		return nil
	}
	var opts struct {
		Salt   string
		Rounds uint32
	}
	if err := ssh.Unmarshal([]byte(envelope.KdfOpts), &opts); err != nil {
		return nil
	}
	if opts.Rounds > MaxKDFRounds {
		return inputerr.New("private_key is encrypted with %d bcrypt KDF rounds: at most %d are accepted; "+
			"re-encrypt it with `ssh-keygen -p -a 16 -f FILE` or send it unencrypted", opts.Rounds, MaxKDFRounds)
	}
	return nil
}

// CheckPublicMatches verifies a public_key given with an import: it must
// parse as an authorized_keys line and be the public half of key.
func CheckPublicMatches(authorizedLine string, key crypto.Signer) error {
	if len(authorizedLine) > MaxInputLen {
		return inputerr.New("public_key is too long: at most %d bytes", MaxInputLen)
	}
	given, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedLine))
	if err != nil {
		return inputerr.New("public_key does not parse as an authorized_keys line (for example \"ssh-ed25519 AAAA... comment\")")
	}
	own, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return err
	}
	if !bytes.Equal(given.Marshal(), own.Marshal()) {
		return inputerr.New("public_key does not match private_key (public_key is %s, private_key's public half is %s)",
			ssh.FingerprintSHA256(given), ssh.FingerprintSHA256(own))
	}
	return nil
}

// Encoded is a key in the form the engine stores and shows.
type Encoded struct {
	// PrivateKey is the OpenSSH PEM text, unencrypted.
	PrivateKey string
	// PublicKey is the authorized_keys line, with comment.
	PublicKey   string
	Fingerprint string
	KeyType     string
	KeyBits     int
}

// Encode encodes key with comment (in the public key line and inside the
// private key).
func Encode(key crypto.Signer, comment string) (Encoded, error) {
	keyType, bits, err := Info(key)
	if err != nil {
		return Encoded{}, err
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return Encoded{}, fmt.Errorf("encoding the public key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		return Encoded{}, fmt.Errorf("encoding the private key: %w", err)
	}
	return Encoded{
		PrivateKey:  string(pem.EncodeToMemory(block)),
		PublicKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " " + comment,
		Fingerprint: ssh.FingerprintSHA256(pub),
		KeyType:     keyType,
		KeyBits:     bits,
	}, nil
}

// Export returns a stored private key (Encoded.PrivateKey) in OpenSSH
// format, encrypted with passphrase (bcrypt KDF, aes256-ctr, as ssh-keygen
// does) when one is given.
func Export(privatePEM, comment, passphrase string) (string, error) {
	raw, err := ssh.ParseRawPrivateKey([]byte(privatePEM))
	if err != nil {
		return "", errors.New("stored SSH private key does not parse")
	}
	if passphrase == "" {
		return privatePEM, nil
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(raw, comment, []byte(passphrase))
	if err != nil {
		return "", errors.New("encrypting the SSH private key failed")
	}
	return string(pem.EncodeToMemory(block)), nil
}

// Fingerprint is the SHA256 fingerprint of key's public half, as
// `ssh-keygen -lf` prints it.
func Fingerprint(key crypto.Signer) (string, error) {
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return "", err
	}
	return ssh.FingerprintSHA256(pub), nil
}
