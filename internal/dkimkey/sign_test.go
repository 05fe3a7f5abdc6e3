package dkimkey

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

const testMessage = "From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"

func testKey(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func signWith(t testing.TB, key ed25519.PrivateKey, encoded string, headers []string, c string) (string, error) {
	opts, err := SignOptions(headers, c)
	if err != nil {
		return "", err
	}
	opts.Domain, opts.Selector, opts.Signer = "example.com", "s1", key
	return Sign(encoded, opts)
}

// The streamed signature verifies with go-msgauth's verifier fed from the
// published record, whatever whitespace the base64 carries.
func TestSignVerifies(t *testing.T) {
	key := testKey(t)
	pub, _ := PublicKey(key.Public())
	records := map[string]string{RecordName("s1", "example.com"): TXTValue("ed25519", pub)}
	enc := base64.StdEncoding.EncodeToString([]byte(testMessage))
	for name, in := range map[string]string{
		"plain":  enc,
		"folded": enc[:10] + "\r\n " + enc[10:20] + "\t\n" + enc[20:],
	} {
		sig, err := signWith(t, key, in, nil, DefaultCanonicalization)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := dkimcheck.Verify(records, sig+testMessage); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

func TestMessageSize(t *testing.T) {
	for msg := range map[string]bool{"": true, "a": true, "ab": true, "abc": true, strings.Repeat("x", 1000): true} {
		enc := base64.StdEncoding.EncodeToString([]byte(msg))
		folded := strings.ReplaceAll(enc, "A", "A\r\n")
		for _, in := range []string{enc, folded} {
			n, err := MessageSize(in)
			if msg == "" {
				if err == nil {
					t.Fatal("an empty message is accepted")
				}
				continue
			}
			if err != nil || n != len(msg) {
				t.Fatalf("MessageSize of %d bytes = %d, %v", len(msg), n, err)
			}
		}
	}
	for _, bad := range []string{"abc", "abcde", "ab===="} {
		if _, err := MessageSize(bad); err == nil {
			t.Errorf("MessageSize(%q) accepted", bad)
		}
	}
}

func TestSignRefusesBadMessages(t *testing.T) {
	key := testKey(t)
	for name, in := range map[string]string{
		"bad base64":    "%%%%",
		"no header end": base64.StdEncoding.EncodeToString([]byte("From: a@example.com")),
	} {
		_, err := signWith(t, key, in, nil, DefaultCanonicalization)
		if _, ok := inputerr.As(err); !ok || !strings.Contains(err.Error(), "message") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Generated keys parse with the standard library and match their p=.
func TestGenerateAndParse(t *testing.T) {
	for _, name := range []string{"rsa-2048", "ed25519"} {
		kt, err := ParseKeyType(name)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := Generate(rand.Reader, kt)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode([]byte(pair.PrivatePEM))
		key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		var want string
		switch k := key.(type) {
		case ed25519.PrivateKey:
			want = base64.StdEncoding.EncodeToString(k.Public().(ed25519.PublicKey))
		case *rsa.PrivateKey:
			der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
			want = base64.StdEncoding.EncodeToString(der)
		}
		if want != pair.PublicB64 {
			t.Fatalf("%s: p= does not match the private key", name)
		}
		if _, err := ParsePrivateKey(pair.PrivatePEM); err != nil {
			t.Fatal(err)
		}
	}
	for _, bad := range []string{"rsa-1024", "rsa1024", "dsa"} {
		if _, err := ParseKeyType(bad); err == nil || !strings.Contains(err.Error(), "key_type") {
			t.Errorf("ParseKeyType(%q): %v", bad, err)
		}
	}
	if _, err := ParsePrivateKey("not pem"); err == nil || strings.Contains(err.Error(), "not pem") {
		t.Errorf("ParsePrivateKey: %v", err)
	}
}
