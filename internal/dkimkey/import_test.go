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
)

func TestImportRSAPKCS1AndPKCS8(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	pkcs1 := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}))
	der8, _ := x509.MarshalPKCS8PrivateKey(key)
	pkcs8 := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der8}))
	spki, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	want := base64.StdEncoding.EncodeToString(spki)
	for name, text := range map[string]string{"pkcs1": pkcs1, "pkcs8": pkcs8} {
		pair, typ, err := Import(text)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if typ.Name != "rsa-2048" || pair.PublicB64 != want {
			t.Fatalf("%s: got type %s, public key matches: %v", name, typ.Name, pair.PublicB64 == want)
		}
		back, err := ParsePrivateKey(pair.PrivatePEM)
		if err != nil || !back.(*rsa.PrivateKey).Equal(key) {
			t.Fatalf("%s: stored PEM does not hold the imported key: %v", name, err)
		}
	}
}

func TestImportEd25519(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKCS8PrivateKey(priv)
	pair, typ, err := Import(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	if err != nil {
		t.Fatal(err)
	}
	if typ.Name != "ed25519" || pair.PublicB64 != base64.StdEncoding.EncodeToString(pub) {
		t.Fatalf("got %s %s", typ.Name, pair.PublicB64)
	}
}

func TestImportRefusals(t *testing.T) {
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallPEM := string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}))
	secret := "NOT-A-KEY-7f3a9c"
	cases := map[string]struct{ in, want string }{
		"not pem":    {secret, "not PEM"},
		"bad pkcs1":  {string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: []byte(secret)})), "not valid PKCS#1"},
		"bad pkcs8":  {string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte(secret)})), "not valid PKCS#8"},
		"encrypted":  {string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte(secret)})), "encrypted PKCS#8"},
		"public":     {string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte(secret)})), "not a private key"},
		"small rsa":  {smallPEM, "1024 bits"},
		"two blocks": {smallPEM + smallPEM, "one PEM block"},
	}
	for name, c := range cases {
		_, _, err := Import(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "private_key") {
			t.Errorf("%s: got %v, want an error naming private_key and %q", name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("%s: error quotes the input", name)
		}
	}
}

// FuzzImport: any input is imported or refused as input (a 400), and a
// refusal never quotes the input.
func FuzzImport(f *testing.F) {
	key, _ := rsa.GenerateKey(rand.Reader, 2048)
	f.Add(string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
	f.Add("-----BEGIN PRIVATE KEY-----\nQUJDREVGR0hJSktM\n-----END PRIVATE KEY-----\n")
	f.Add("-----BEGIN EC PRIVATE KEY-----\nQUJDREVGR0hJSktM\n-----END EC PRIVATE KEY-----\n")
	f.Add("QUJDREVGR0hJSktMTU5PUFFSU1RVVldY")
	f.Fuzz(func(t *testing.T, s string) {
		pair, typ, err := Import(s)
		if err != nil {
			refusedAsInput(t, "Import", err)
			// The key's bytes never appear: neither the whole input nor
			// the body of its PEM block.
			if block, _ := pem.Decode([]byte(strings.TrimSpace(s))); block != nil && len(block.Bytes) >= 8 {
				body := base64.StdEncoding.EncodeToString(block.Bytes)
				if strings.Contains(err.Error(), body[:10]) {
					t.Fatal("the refusal quotes the key")
				}
			} else if block == nil && !strings.Contains(err.Error(), "too long") && !strings.HasPrefix(err.Error(), "invalid private_key: not PEM") {
				t.Fatalf("non-PEM input refused with %q", err)
			}
			return
		}
		if _, err := ParsePrivateKey(pair.PrivatePEM); err != nil || typ.Name == "" {
			t.Fatalf("imported key does not parse back: %v", err)
		}
	})
}
