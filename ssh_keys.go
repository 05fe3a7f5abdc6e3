package penguinmails

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
)

// SSH key types that can be generated, in the order the help lists them.
const sshDefaultKeyType = "ed25519"

var sshKeyTypes = []string{"ed25519", "rsa-4096", "rsa-3072", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521"}

var sshCurves = map[string]elliptic.Curve{
	"ecdsa-p256": elliptic.P256(),
	"ecdsa-p384": elliptic.P384(),
	"ecdsa-p521": elliptic.P521(),
}

// RSA bounds. Below 3072 bits is refused (NIST SP 800-57 puts 2048 at the end
// of its life); above 8192 an import would make every rotation take minutes.
const (
	sshMinRSABits = 3072
	sshMaxRSABits = 8192
	// maxKeyInputLen bounds private_key and public_key input; an RSA-8192
	// key in PEM is about 6.5 KiB.
	maxKeyInputLen = 16 * 1024
)

// validateSSHKeyType checks a key_type asked for generation.
func validateSSHKeyType(keyType string) error {
	if bits, ok := rsaBitsOf(keyType); ok && bits < sshMinRSABits {
		return badInput("invalid key_type %s: RSA keys must be at least %d bits; use rsa-3072, rsa-4096 or ed25519", quoteShort(keyType), sshMinRSABits)
	}
	return validateOneOf("key_type", keyType, sshKeyTypes)
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

// generateSSHKey makes a new private key of keyType. keyType is one of
// sshKeyTypes or, for a rotation of an imported RSA key, "rsa-N" within the
// accepted bounds. Since Go 1.26 RSA and ECDSA generation draw from the
// system CSPRNG whatever random is; Ed25519 uses random (Vault's entropy
// source when one is configured).
func generateSSHKey(keyType string, random io.Reader) (crypto.Signer, error) {
	if keyType == "ed25519" {
		_, priv, err := ed25519.GenerateKey(random)
		return priv, err
	}
	if curve, ok := sshCurves[keyType]; ok {
		return ecdsa.GenerateKey(curve, random)
	}
	if bits, ok := rsaBitsOf(keyType); ok && bits >= sshMinRSABits && bits <= sshMaxRSABits {
		return rsa.GenerateKey(random, bits)
	}
	return nil, fmt.Errorf("cannot generate SSH key type %q", keyType)
}

// sshKeyInfo names a key the way key_type does and gives its size in bits.
// It refuses key kinds and sizes this engine does not serve.
func sshKeyInfo(key crypto.Signer) (keyType string, bits int, err error) {
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return "ed25519", 256, nil
	case *ecdsa.PrivateKey:
		bits = k.Curve.Params().BitSize
		for name, c := range sshCurves {
			if c == k.Curve {
				return name, bits, nil
			}
		}
		return "", 0, badInput("private_key is an ECDSA key on an unsupported curve: only P-256, P-384 and P-521 are accepted")
	case *rsa.PrivateKey:
		bits = k.N.BitLen()
		if bits < sshMinRSABits || bits > sshMaxRSABits {
			return "", 0, badInput("private_key is a %d-bit RSA key: RSA keys must be %d to %d bits", bits, sshMinRSABits, sshMaxRSABits)
		}
		// The OpenSSH format holds two primes: a multi-prime key would be
		// stored as a key that no longer parses.
		if len(k.Primes) != 2 {
			return "", 0, badInput("private_key is a multi-prime RSA key (%d primes): only two-prime RSA keys are accepted", len(k.Primes))
		}
		return fmt.Sprintf("rsa-%d", bits), bits, nil
	}
	return "", 0, badInput("private_key is of an unsupported kind: only Ed25519, ECDSA (P-256, P-384, P-521) and RSA keys are accepted")
}

// parseSSHPrivateKey reads an OpenSSH or PEM (PKCS#1, PKCS#8, SEC 1) private
// key, decrypting it with passphrase when it is encrypted. Errors are input
// errors that never quote the key, the passphrase or the parser's message
// (which may describe the key's bytes).
func parseSSHPrivateKey(pemText, passphrase string) (crypto.Signer, error) {
	if strings.TrimSpace(pemText) == "" {
		return nil, badInput("private_key is empty")
	}
	if len(pemText) > maxKeyInputLen {
		return nil, badInput("private_key is too long: at most %d bytes", maxKeyInputLen)
	}
	if block, _ := pem.Decode([]byte(pemText)); block != nil && block.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, badInput("private_key is an encrypted PKCS#8 key, which is not supported: " +
			"convert it with `ssh-keygen -p -f FILE` (OpenSSH format) or send it unencrypted")
	}
	raw, err := ssh.ParseRawPrivateKey([]byte(pemText))
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		if passphrase == "" {
			return nil, badInput("private_key is encrypted: passphrase is required")
		}
		raw, err = ssh.ParseRawPrivateKeyWithPassphrase([]byte(pemText), []byte(passphrase))
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, badInput("private_key cannot be decrypted: the passphrase is wrong")
		}
	}
	if err != nil {
		return nil, badInput("private_key does not parse as an OpenSSH or PEM (PKCS#1, PKCS#8, SEC 1) private key")
	}
	// OpenSSH Ed25519 keys come back as a pointer; everything else uses values.
	if p, ok := raw.(*ed25519.PrivateKey); ok {
		raw = *p
	}
	signer, ok := raw.(crypto.Signer)
	if !ok {
		return nil, badInput("private_key is of an unsupported kind: only Ed25519, ECDSA (P-256, P-384, P-521) and RSA keys are accepted")
	}
	return signer, nil
}

// checkPublicKeyMatches verifies a public_key given with an import: it must
// parse as an authorized_keys line and be the public half of key.
func checkPublicKeyMatches(authorizedLine string, key crypto.Signer) error {
	if len(authorizedLine) > maxKeyInputLen {
		return badInput("public_key is too long: at most %d bytes", maxKeyInputLen)
	}
	given, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorizedLine))
	if err != nil {
		return badInput("public_key does not parse as an authorized_keys line (for example \"ssh-ed25519 AAAA... comment\")")
	}
	own, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return err
	}
	if !bytes.Equal(given.Marshal(), own.Marshal()) {
		return badInput("public_key does not match private_key (public_key is %s, private_key's public half is %s)",
			ssh.FingerprintSHA256(given), ssh.FingerprintSHA256(own))
	}
	return nil
}

// sshMaterial is one version of an SSH key. The private key is kept in
// OpenSSH format, unencrypted: storage is seal-wrapped, and a download
// encrypts it with the passphrase asked for then.
type sshMaterial struct {
	PrivateKey  string `json:"private_key,omitempty"`
	PublicKey   string `json:"public_key"`
	Fingerprint string `json:"fingerprint"`
	KeyType     string `json:"key_type"`
	KeyBits     int    `json:"key_bits"`
	Comment     string `json:"comment"`
	Imported    bool   `json:"imported"`
	// Downloads counts downloads of this version's private key; it is what
	// one_time_download limits.
	Downloads int `json:"downloads,omitempty"`
	// OneTimeLocked is set by a download made while one_time_download was
	// on; switching the flag off does not unlock the version.
	OneTimeLocked bool `json:"one_time_locked,omitempty"`
}

// newSSHMaterial encodes key as one version's material.
func newSSHMaterial(key crypto.Signer, comment string, imported bool) (sshMaterial, error) {
	keyType, bits, err := sshKeyInfo(key)
	if err != nil {
		return sshMaterial{}, err
	}
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		return sshMaterial{}, fmt.Errorf("encoding the public key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(key, comment)
	if err != nil {
		return sshMaterial{}, fmt.Errorf("encoding the private key: %w", err)
	}
	return sshMaterial{
		PrivateKey:  string(pem.EncodeToMemory(block)),
		PublicKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))) + " " + comment,
		Fingerprint: ssh.FingerprintSHA256(pub),
		KeyType:     keyType,
		KeyBits:     bits,
		Comment:     comment,
		Imported:    imported,
	}, nil
}

// exportPrivateKey returns the version's private key in OpenSSH format,
// encrypted with passphrase (bcrypt KDF, aes256-ctr, as ssh-keygen does) when
// one is given.
func (m sshMaterial) exportPrivateKey(passphrase string) (string, error) {
	raw, err := ssh.ParseRawPrivateKey([]byte(m.PrivateKey))
	if err != nil {
		return "", errors.New("stored SSH private key does not parse")
	}
	if passphrase == "" {
		return m.PrivateKey, nil
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(raw, m.Comment, []byte(passphrase))
	if err != nil {
		return "", errors.New("encrypting the SSH private key failed")
	}
	return string(pem.EncodeToMemory(block)), nil
}

// sshKeyComment labels a key in authorized_keys so that an agent or a person
// can tell which secret and version a line belongs to.
func sshKeyComment(e *secretEntry, version int) string {
	return fmt.Sprintf("penguinmails:%s/%s/%s:v%d", e.Kind, e.Tenant, e.Name, version)
}
