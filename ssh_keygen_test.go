package penguinmails

import (
	"bytes"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/sshcheck"
)

// These wrap internal/sshcheck, which checks the plugin's keys with OpenSSH's
// own ssh-keygen, so that the tests do not only agree with the library the
// plugin uses.

// keygenFingerprint is what `ssh-keygen -lf` prints for a public key line.
func keygenFingerprint(t *testing.T, authorizedLine string) (bits, fingerprint string) {
	t.Helper()
	bits, fingerprint, err := sshcheck.Fingerprint(t.TempDir(), authorizedLine)
	if err != nil {
		t.Fatal(err)
	}
	return bits, fingerprint
}

// keygenPublicOf asks ssh-keygen for the public key of a private key; the
// error is the tests' to judge (wrong passphrases must fail).
func keygenPublicOf(t *testing.T, privatePEM, passphrase string) (ssh.PublicKey, error) {
	t.Helper()
	return sshcheck.PublicOf(t.TempDir(), privatePEM, passphrase)
}

// parsePublic parses an authorized_keys line and fails the test otherwise.
func parsePublic(t *testing.T, line string) ssh.PublicKey {
	t.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatalf("public key %q does not parse: %v", line, err)
	}
	return pub
}

func samePublicKey(a, b ssh.PublicKey) bool { return bytes.Equal(a.Marshal(), b.Marshal()) }

// keygenPair makes a key pair with ssh-keygen (the import tests feed the
// plugin keys that OpenSSH wrote, not ones this package wrote).
func keygenPair(t *testing.T, passphrase string, args ...string) (private, public string) {
	t.Helper()
	private, public, err := sshcheck.NewPair(t.TempDir(), passphrase, "imported@test", args...)
	if err != nil {
		t.Fatal(err)
	}
	return private, public
}
