package penguinmails

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// These helpers check the plugin's keys with OpenSSH's own ssh-keygen, so that
// the tests do not only agree with the library the plugin uses.

func sshKeygenPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatalf("ssh-keygen is needed to check SSH keys against OpenSSH: %v", err)
	}
	return p
}

// sshKeygen runs ssh-keygen and returns its standard output, failing the test
// when it fails.
func sshKeygen(t *testing.T, args ...string) string {
	t.Helper()
	out, err := sshKeygenErr(t, args...)
	if err != nil {
		t.Fatalf("ssh-keygen %s: %v", strings.Join(args, " "), err)
	}
	return out
}

func sshKeygenErr(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(sshKeygenPath(t), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), &keygenError{err: err, stderr: strings.TrimSpace(stderr.String())}
	}
	return stdout.String(), nil
}

type keygenError struct {
	err    error
	stderr string
}

func (e *keygenError) Error() string { return e.err.Error() + ": " + e.stderr }

// writeKeyFile writes content with the 0600 mode ssh-keygen insists on for
// private keys.
func writeKeyFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// keygenFingerprint is what `ssh-keygen -lf` prints for a public key line:
// the bit count and the SHA256 fingerprint.
func keygenFingerprint(t *testing.T, authorizedLine string) (bits, fingerprint string) {
	t.Helper()
	out := strings.Fields(sshKeygen(t, "-l", "-E", "sha256", "-f", writeKeyFile(t, "key.pub", authorizedLine+"\n")))
	if len(out) < 2 {
		t.Fatalf("ssh-keygen -lf printed %q", out)
	}
	return out[0], out[1]
}

// keygenPublicOf asks ssh-keygen to derive the public key of a private key
// file, decrypting it with passphrase.
func keygenPublicOf(t *testing.T, privatePEM, passphrase string) (ssh.PublicKey, error) {
	t.Helper()
	out, err := sshKeygenErr(t, "-y", "-P", passphrase, "-f", writeKeyFile(t, "key", privatePEM))
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out))
	return pub, err
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
// plugin keys that OpenSSH wrote, not ones this package wrote) and returns
// the private file's text and the public line.
func keygenPair(t *testing.T, passphrase string, args ...string) (private, public string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "id")
	sshKeygen(t, append([]string{"-q", "-N", passphrase, "-C", "imported@test", "-f", path}, args...)...)
	priv, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	return string(priv), strings.TrimSpace(string(pub))
}
