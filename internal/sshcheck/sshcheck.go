// Package sshcheck checks SSH keys with OpenSSH's own ssh-keygen, for the
// unit and integration tests, so that the plugin's keys are judged by an
// implementation other than the library that made them.
package sshcheck

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Run runs ssh-keygen and returns its standard output; an error carries
// ssh-keygen's standard error.
func Run(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("ssh-keygen", args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("ssh-keygen %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Fingerprint is what `ssh-keygen -lf` prints for an authorized_keys line:
// the bit count and the SHA256 fingerprint. dir holds the temporary file.
func Fingerprint(dir, authorizedLine string) (bits, fingerprint string, err error) {
	path, err := writeKeyFile(dir, "key.pub", authorizedLine+"\n")
	if err != nil {
		return "", "", err
	}
	out, err := Run("-l", "-E", "sha256", "-f", path)
	if err != nil {
		return "", "", err
	}
	f := strings.Fields(out)
	if len(f) < 2 {
		return "", "", fmt.Errorf("ssh-keygen -lf printed %q", out)
	}
	return f[0], f[1], nil
}

// PublicOf asks `ssh-keygen -y` for the public key of a private key,
// decrypting it with passphrase.
func PublicOf(dir, privatePEM, passphrase string) (ssh.PublicKey, error) {
	path, err := writeKeyFile(dir, "key", privatePEM)
	if err != nil {
		return nil, err
	}
	out, err := Run("-y", "-P", passphrase, "-f", path)
	if err != nil {
		return nil, err
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(out))
	return pub, err
}

// NewPair makes a key pair with ssh-keygen (extra arguments such as -t rsa
// -b 3072 pick the type) and returns the private file's text and the
// public line.
func NewPair(dir, passphrase, comment string, args ...string) (private, public string, err error) {
	path := filepath.Join(dir, "id")
	if _, err := Run(append([]string{"-q", "-N", passphrase, "-C", comment, "-f", path}, args...)...); err != nil {
		return "", "", err
	}
	priv, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		return "", "", err
	}
	return string(priv), strings.TrimSpace(string(pub)), nil
}

// writeKeyFile writes content with the 0600 mode ssh-keygen insists on.
func writeKeyFile(dir, name, content string) (string, error) {
	path := filepath.Join(dir, name)
	return path, os.WriteFile(path, []byte(content), 0o600)
}
