package penguinmails

import (
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// SendGrid's api_key_id is 22 characters of base64url, which may begin with
// "-" or "_" (about one id in 32): such a key must be accepted, on its
// first write and on later writes that only change its attributes, or a
// rotation that drew such an id would make the secret unwritable.
func TestAPIKeys_IDsMayStartWithDashOrUnderscore(t *testing.T) {
	for _, id := range []string{"_BKbj1uvmwmR4Ey-DtQ2og", "-cpINE3tHedcn0fDGCxIRw"} {
		env := newTestEnv(t)
		env.ok(logical.CreateOperation, "api-keys/t1/sendgrid", map[string]interface{}{
			"api_key": "SG.abcdefghijklmnopqrstuv.wxyz", "api_key_id": id, "scopes": "mail.send",
		})
		env.ok(logical.UpdateOperation, "api-keys/t1/sendgrid", map[string]interface{}{"key_name": "renamed"})
		if got := env.ok(logical.ReadOperation, "api-keys/t1/sendgrid", nil)["api_key_id"]; got != id {
			t.Fatalf("api_key_id %v, want %s", got, id)
		}
	}
}

// Ids are still refused when they could name another path at the
// provider (they go into URL paths) or carry spaces.
func TestAPIKeys_BadIDsAreRefused(t *testing.T) {
	for _, id := range []string{".", "..", ".hidden", "a b", "a\tb"} {
		env := newTestEnv(t)
		msg := env.badRequest(logical.CreateOperation, "api-keys/t1/sendgrid", map[string]interface{}{
			"api_key": "SG.abcdefghijklmnopqrstuv.wxyz", "api_key_id": id, "scopes": "mail.send",
		})
		if !strings.Contains(msg, "api_key_id") {
			t.Errorf("api_key_id %q: %s, want a 400 naming api_key_id", id, msg)
		}
	}
}
