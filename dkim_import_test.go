package penguinmails

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

func rsaPKCS1PEM(t *testing.T, bits int) (string, *rsa.PrivateKey) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})), k
}

// The p= of an imported key is computed here with crypto/x509 from the key
// the test made, not with the engine's dkimkey.
func spkiB64(t *testing.T, k *rsa.PrivateKey) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func TestDKIM_ImportKeepsTheKeyAndIsIdempotent(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	pemText, key := rsaPKCS1PEM(t, 2048)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"private_key": pemText, "selector": "pm"})
	got := env.ok(logical.ReadOperation, dkimPath, nil)
	if got["public_key"] != spkiB64(t, key) || got["selector"] != "pm" || got["key_type"] != "rsa-2048" || got["version"] != 1 {
		t.Fatalf("imported key read back as selector %v key_type %v version %v, public key matches: %v",
			got["selector"], got["key_type"], got["version"], got["public_key"] == spkiB64(t, key))
	}
	exported := env.ok(logical.UpdateOperation, dkimPath+"/private", nil)["private_key"].(string)
	block, _ := pem.Decode([]byte(exported))
	back, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil || !back.(*rsa.PrivateKey).Equal(key) {
		t.Fatalf("exported key is not the imported one: %v", err)
	}

	// The same key again, with or without its selector: nothing new.
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"private_key": pemText, "selector": "pm"})
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"private_key": pemText})
	if v := env.ok(logical.ReadOperation, dkimPath, nil)["version"]; v != 1 {
		t.Fatalf("importing the current key again made version %v", v)
	}

	// Another key under the same selector is refused; under a new one it is
	// version 2 and the first key retires.
	other, otherKey := rsaPKCS1PEM(t, 3072)
	msg := env.badRequest(logical.UpdateOperation, dkimPath, map[string]interface{}{"private_key": other, "selector": "pm"})
	if !strings.Contains(msg, "selector") || !strings.Contains(msg, "version 1") {
		t.Fatalf("other key under a used selector: %q", msg)
	}
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"private_key": other, "selector": "pm2"})
	got = env.ok(logical.ReadOperation, dkimPath, nil)
	if got["version"] != 2 || got["key_type"] != "rsa-3072" || got["public_key"] != spkiB64(t, otherKey) {
		t.Fatalf("second import: version %v key_type %v", got["version"], got["key_type"])
	}
	rows := env.historyRows(dkimPath)
	if rows[0]["reason"] != "private_key imported" {
		t.Fatalf("history of the import: %v", rows[0])
	}
}

func TestDKIM_ImportRefusesBadKeysWithoutQuotingThem(t *testing.T) {
	small, _ := rsaPKCS1PEM(t, 1024)
	good, _ := rsaPKCS1PEM(t, 2048)
	garbage := "-----BEGIN RSA PRIVATE KEY-----\nU0VDUkVULTkxYjI=\n-----END RSA PRIVATE KEY-----\n"
	cases := map[string]struct {
		in   map[string]interface{}
		want []string
	}{
		"not pem":        {map[string]interface{}{"private_key": "SECRET-91b2"}, []string{"private_key", "not PEM"}},
		"bad pkcs1":      {map[string]interface{}{"private_key": garbage}, []string{"private_key", "PKCS#1"}},
		"rsa-1024":       {map[string]interface{}{"private_key": small}, []string{"private_key", "1024 bits"}},
		"key_type clash": {map[string]interface{}{"private_key": good, "key_type": "ed25519"}, []string{"key_type", "rsa-2048"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			env := newImmediateDKIMEnv(t)
			msg := env.badRequest(logical.UpdateOperation, dkimPath, c.in)
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q does not mention %q", msg, w)
				}
			}
			if strings.Contains(msg, "SECRET-91b2") || strings.Contains(msg, "U0VDUkVULTkxYjI") {
				t.Errorf("message quotes the key: %q", msg)
			}
			if keys := env.storedKeys(); len(keys) != 0 {
				t.Errorf("bad input stored %v", keys)
			}

			// On an existing key, by write or by patch, it changes nothing.
			env.ok(logical.UpdateOperation, dkimPath, nil)
			before := env.storageSnapshot()
			env.badRequest(logical.UpdateOperation, dkimPath, c.in)
			env.badRequest(logical.PatchOperation, dkimPath, c.in)
			if after := env.storageSnapshot(); !reflect.DeepEqual(before, after) {
				t.Error("a refused import changed the stored key")
			}
		})
	}
}

// A first imported key waits for activation like a generated one.
func TestDKIM_ImportedKeyIsStagedLikeAGeneratedOne(t *testing.T) {
	env := newTestEnv(t)
	pemText, key := rsaPKCS1PEM(t, 2048)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"private_key": pemText, "selector": "pm"})
	env.wantSignRefused(dkimPath)
	env.ok(logical.UpdateOperation, dkimPath+"/activate", map[string]interface{}{"reason": "published already"})
	if got := env.ok(logical.ReadOperation, dkimPath, nil); got["public_key"] != spkiB64(t, key) {
		t.Fatal("activated key is not the imported one")
	}
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"private_key": pemText, "selector": "pm"})
	if v := env.ok(logical.ReadOperation, dkimPath, nil)["current_version"]; v != 1 {
		t.Fatalf("re-import after activation made version %v", v)
	}
}
