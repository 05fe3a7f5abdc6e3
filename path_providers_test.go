package penguinmails

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// A provider credential is stored and listed, but a read never returns
// its secret; the provider cannot change and takes only its own fields.
func TestProviders_StoredNeverReturned(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config/providers/aws", map[string]interface{}{"provider": "ses",
		"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})
	env.ok(logical.UpdateOperation, "config/providers/sg", map[string]interface{}{"provider": "sendgrid", "api_key": "SG.admin-secret"})
	read := env.ok(logical.ReadOperation, "config/providers/aws", nil)
	if read["provider"] != "ses" || read["access_key_id"] != "AKIAIOSFODNN7EXAMPLE" {
		t.Fatalf("read: %v", read)
	}
	for _, path := range []string{"config/providers/aws", "config/providers/sg"} {
		for k, v := range env.ok(logical.ReadOperation, path, nil) {
			if s, _ := v.(string); strings.Contains(s, "EXAMPLEKEY") || strings.Contains(s, "admin-secret") {
				t.Fatalf("%s returns its secret in %s", path, k)
			}
		}
	}
	list := env.ok(logical.ListOperation, "config/providers/", nil)
	if keys := list["keys"].([]string); len(keys) != 2 || keys[0] != "aws" || keys[1] != "sg" {
		t.Fatalf("list: %v", list)
	}

	for _, tc := range []struct {
		path string
		data map[string]interface{}
		want string
	}{
		{"config/providers/sg", map[string]interface{}{"provider": "mailgun"}, "cannot change"},
		{"config/providers/x", map[string]interface{}{"api_key": "k"}, "provider is required"},
		{"config/providers/x", map[string]interface{}{"provider": "postmark", "api_key": "k"}, "provider"},
		{"config/providers/x", map[string]interface{}{"provider": "sendgrid", "api_token": "k"}, "api_token does not apply"},
		{"config/providers/x", map[string]interface{}{"provider": "sendgrid"}, "api_key is required"},
		{"config/providers/x", map[string]interface{}{"provider": "ses", "access_key_id": "nope", "secret_access_key": "k"}, "access_key_id"},
		{"config/providers/x", map[string]interface{}{"provider": "mailu", "api_token": "t"}, "base_url"},
		{"config/providers/x", map[string]interface{}{"provider": "mailu", "api_token": "t", "base_url": "http://mail.example.com/api"}, "loopback"},
	} {
		if msg := env.badRequest(logical.UpdateOperation, tc.path, tc.data); !strings.Contains(msg, tc.want) {
			t.Errorf("%s %v: %q does not say %q", tc.path, tc.data, msg, tc.want)
		}
	}
	if resp, _ := env.do(logical.ReadOperation, "config/providers/x", nil); resp != nil {
		t.Fatalf("a refused write stored config/providers/x: %v", resp.Data)
	}
}

// A secret that names an account sends the account's credential only to
// the account's base_url, and a secret's own base_url changes only with a
// new key: a writer who cannot read a key cannot have it sent elsewhere.
func TestProviders_CredentialsGoOnlyToTheirURL(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config/providers/sg", map[string]interface{}{"provider": "sendgrid", "api_key": "SG.admin",
		"base_url": "https://sendgrid.internal.example.com"})
	key := map[string]interface{}{"api_key": "SG.tenant", "api_key_id": "id-1", "scopes": "mail.send"}
	with := func(extra map[string]interface{}) map[string]interface{} {
		d := map[string]interface{}{}
		for k, v := range key {
			d[k] = v
		}
		for k, v := range extra {
			d[k] = v
		}
		return d
	}
	msg := env.badRequest(logical.CreateOperation, "api-keys/t1/sendgrid", with(map[string]interface{}{"account": "sg", "base_url": "https://evil.example.com"}))
	if !strings.Contains(msg, "base_url must be empty or the base_url of account") {
		t.Fatalf("account with another base_url: %q", msg)
	}
	env.ok(logical.CreateOperation, "api-keys/t1/sendgrid", with(map[string]interface{}{"account": "sg"}))

	env.ok(logical.CreateOperation, "api-keys/t2/sendgrid", with(nil))
	msg = env.badRequest(logical.UpdateOperation, "api-keys/t2/sendgrid", map[string]interface{}{"base_url": "https://evil.example.com"})
	if !strings.Contains(msg, "base_url can change only together with a new api_key") {
		t.Fatalf("base_url change without a new key: %q", msg)
	}
	env.ok(logical.UpdateOperation, "api-keys/t2/sendgrid", map[string]interface{}{"base_url": "https://sendgrid.internal.example.com",
		"api_key": "SG.tenant-2", "api_key_id": "id-2"})
	if got := env.ok(logical.ReadOperation, "api-keys/t2/sendgrid", nil)["base_url"]; got != "https://sendgrid.internal.example.com" {
		t.Fatalf("base_url after a write with a new key: %v", got)
	}
}
