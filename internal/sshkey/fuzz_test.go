package sshkey

import (
	"bytes"
	"crypto"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

// FuzzImport feeds the import path (private key text, passphrase, public_key
// line) arbitrary input. Properties: no panic; a refusal is an
// *inputerr.Error whose message quotes none of the three inputs; an accepted
// key encodes, parses back from its stored form and keeps its fingerprint,
// and an accepted public_key line is the key's own. The committed seed
// corpus (testdata/fuzz/FuzzImport) holds keys ssh-keygen wrote in every
// accepted format, encrypted and not, and near misses.
func FuzzImport(f *testing.F) {
	f.Add("", "", "")
	f.Add("-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n", "pass", "ssh-ed25519 AAAA x")
	f.Fuzz(func(t *testing.T, privateText, passphrase, publicLine string) {
		key, err := ParsePrivate(privateText, passphrase)
		if err != nil {
			checkRefusal(t, err, privateText, passphrase, publicLine)
			return
		}
		if _, _, err := Info(key); err != nil {
			checkRefusal(t, err, privateText, passphrase, publicLine)
			return
		}
		if publicLine != "" {
			if err := CheckPublicMatches(publicLine, key); err != nil {
				checkRefusal(t, err, privateText, passphrase, publicLine)
			} else if !bytes.Equal(sshMarshalLine(t, publicLine), ownPublic(t, key)) {
				t.Fatal("accepted a public_key that is not the key's own")
			}
		}
		enc, err := Encode(key, "fuzz:v1")
		if err != nil {
			t.Fatalf("accepted key does not encode: %v", err)
		}
		back, err := ParsePrivate(enc.PrivateKey, "")
		if err != nil {
			t.Fatalf("stored form of an accepted key does not parse: %v", err)
		}
		if fp, err := Fingerprint(back); err != nil || fp != enc.Fingerprint {
			t.Fatalf("round trip changed the fingerprint: %s -> %s (%v)", enc.Fingerprint, fp, err)
		}
		if orig, _ := Fingerprint(key); orig != enc.Fingerprint {
			t.Fatalf("encoding changed the fingerprint: %s -> %s", orig, enc.Fingerprint)
		}
	})
}

func ownPublic(t *testing.T, key crypto.Signer) []byte {
	pub, err := ssh.NewPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return pub.Marshal()
}

// sshMarshalLine parses an accepted public_key line; it must parse.
func sshMarshalLine(t *testing.T, line string) []byte {
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		t.Fatalf("CheckPublicMatches accepted a line that does not parse: %v", err)
	}
	return pub.Marshal()
}

// checkRefusal asserts a refusal is an input error that quotes no input.
// Inputs under 8 bytes are too short to tell apart from the message's own
// words.
func checkRefusal(t *testing.T, err error, inputs ...string) {
	t.Helper()
	if _, ok := inputerr.As(err); !ok {
		t.Fatalf("refusal is not an input error: %T %v", err, err)
	}
	msg := err.Error()
	for _, in := range inputs {
		if len(strings.TrimSpace(in)) >= 8 && strings.Contains(msg, in) {
			t.Fatalf("refusal %q quotes the input", msg)
		}
	}
}
