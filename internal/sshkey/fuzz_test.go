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
		inputs := []string{privateText, passphrase, publicLine}
		key, err := importKey(t, inputs)
		if err != nil {
			checkRefusal(t, err, inputs)
			return
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

// importKey runs the import checks the engine runs: parse, the key-kind
// rules, and the public_key match when one is given.
func importKey(t *testing.T, in []string) (crypto.Signer, error) {
	key, err := ParsePrivate(in[0], in[1])
	if err != nil {
		return nil, err
	}
	if _, _, err := Info(key); err != nil {
		return nil, err
	}
	if in[2] != "" {
		if err := CheckPublicMatches(in[2], key); err != nil {
			return nil, err
		}
		if !bytes.Equal(sshMarshalLine(t, in[2]), ownPublic(t, key)) {
			t.Fatal("accepted a public_key that is not the key's own")
		}
	}
	return key, nil
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

// checkRefusal asserts a refusal is an input error that echoes no input.
// An input found in the message may just be words of the message itself
// (the fuzzer feeds the code's own constants back), so the import is re-run
// with one byte of that input changed to one no message contains: an echo
// shows up changed too, template text does not.
func checkRefusal(t *testing.T, err error, inputs []string) {
	t.Helper()
	if _, ok := inputerr.As(err); !ok {
		t.Fatalf("refusal is not an input error: %T %v", err, err)
	}
	msg := err.Error()
	for i, in := range inputs {
		if len(in) < 4 || !strings.Contains(msg, in) {
			continue
		}
		changed := append([]string(nil), inputs...)
		b := []byte(in)
		b[len(b)/2] = 0x01
		changed[i] = string(b)
		if _, err2 := importKey(t, changed); err2 != nil && strings.Contains(err2.Error(), changed[i]) {
			t.Fatalf("refusal %q echoes input %d", err2.Error(), i)
		}
	}
}
