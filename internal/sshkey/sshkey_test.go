package sshkey

import (
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/sshcheck"
)

// Every generated type encodes to a key that ssh-keygen reads back: the same
// fingerprint from the public line, the same public key from the private
// key, plain and encrypted by Export.
func TestGenerateEncodeExport_AgreeWithSSHKeygen(t *testing.T) {
	for _, keyType := range []string{"ed25519", "ecdsa-p256", "ecdsa-p384", "ecdsa-p521", "rsa-3072"} {
		t.Run(keyType, func(t *testing.T) {
			key, err := Generate(keyType, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			enc, err := Encode(key, "test:v1")
			if err != nil || enc.KeyType != keyType {
				t.Fatalf("encode: %v, key_type %s", err, enc.KeyType)
			}
			_, fp, err := sshcheck.Fingerprint(t.TempDir(), enc.PublicKey)
			if err != nil || fp != enc.Fingerprint {
				t.Fatalf("ssh-keygen fingerprint %s (%v), ours %s", fp, err, enc.Fingerprint)
			}
			exported, err := Export(enc.PrivateKey, "test:v1", "export-Passphrase")
			if err != nil {
				t.Fatal(err)
			}
			pub, err := sshcheck.PublicOf(t.TempDir(), exported, "export-Passphrase")
			if err != nil {
				t.Fatalf("ssh-keygen -y on the exported key: %v", err)
			}
			if !strings.HasPrefix(enc.PublicKey, strings.TrimSpace(string(sshMarshal(pub)))) {
				t.Fatal("ssh-keygen derives another public key from the export")
			}
		})
	}
}

// Keys written by ssh-keygen import, encrypted ones with their passphrase,
// and match their own public line but not another's.
func TestParsePrivate_ImportsSSHKeygenKeys(t *testing.T) {
	priv, pub, err := sshcheck.NewPair(t.TempDir(), "imp0rt-Pass", "c", "-t", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivate(priv, ""); !isInputErr(err) || !strings.Contains(err.Error(), "passphrase is required") {
		t.Fatalf("encrypted key without passphrase: %v", err)
	}
	if _, err := ParsePrivate(priv, "wrong"); !isInputErr(err) || !strings.Contains(err.Error(), "passphrase is wrong") {
		t.Fatalf("wrong passphrase: %v", err)
	}
	key, err := ParsePrivate(priv, "imp0rt-Pass")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPublicMatches(pub, key); err != nil {
		t.Fatal(err)
	}
	_, other, err := sshcheck.NewPair(t.TempDir(), "", "c", "-t", "ed25519")
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckPublicMatches(other, key); !isInputErr(err) || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("other public key: %v", err)
	}
}

func TestValidateType(t *testing.T) {
	for _, bad := range []string{"rsa-2048", "dsa", "", strings.Repeat("x", 500)} {
		err := ValidateType(bad)
		if !isInputErr(err) || !strings.Contains(err.Error(), "key_type") || len(err.Error()) > 300 {
			t.Errorf("%.20q: %v", bad, err)
		}
	}
	for _, good := range Types() {
		if err := ValidateType(good); err != nil {
			t.Errorf("%s: %v", good, err)
		}
	}
}

func sshMarshal(pub ssh.PublicKey) []byte { return ssh.MarshalAuthorizedKey(pub) }

func isInputErr(err error) bool {
	_, ok := inputerr.As(err)
	return ok
}

// An encrypted key asking for a huge KDF cost is refused before decrypting.
func TestParsePrivate_RefusesCostlyKDF(t *testing.T) {
	priv, _, err := sshcheck.NewPair(t.TempDir(), "kdf-Pass", "c", "-t", "ed25519", "-a", "200")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = ParsePrivate(priv, "kdf-Pass")
	if !isInputErr(err) || !strings.Contains(err.Error(), "200 bcrypt KDF rounds") || !strings.Contains(err.Error(), "128") {
		t.Fatalf("200 KDF rounds: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("the refusal took %s: it decrypted first", d)
	}
	ok, _, err := sshcheck.NewPair(t.TempDir(), "kdf-Pass", "c", "-t", "ed25519", "-a", "128")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParsePrivate(ok, "kdf-Pass"); err != nil {
		t.Fatalf("128 KDF rounds: %v", err)
	}
}
