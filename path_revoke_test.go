package penguinmails

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestRevoke_RevokesActiveAndGraceVersionsUntilRotate(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"auto_rotate": true})
	env.ok(logical.UpdateOperation, sshPath+"/rotate", nil) // version 1 now in grace
	env.clock.Advance(time.Hour)

	got := env.ok(logical.UpdateOperation, sshPath+"/revoke", map[string]interface{}{"reason": "laptop stolen", "incident_id": "INC-2026-007"})
	if !reflect.DeepEqual(got["revoked_versions"], []int{1, 2}) || got["status"] != statusRevoked {
		t.Fatalf("revoke answered %v", got)
	}
	read := env.ok(logical.ReadOperation, sshPath, nil)
	versions := read["versions"].(map[string]interface{})
	for _, n := range []string{"1", "2"} {
		if s := versions[n].(map[string]interface{})["status"]; s != statusRevoked {
			t.Errorf("version %s status %v, want revoked", n, s)
		}
	}
	if read["status"] != statusRevoked || read["private_key_downloadable"] != false {
		t.Fatalf("read after revoke: status %v, downloadable %v", read["status"], read["private_key_downloadable"])
	}
	ak := env.ok(logical.ReadOperation, sshPath+"/authorized_keys", nil)
	if ak["authorized_keys"] != "" || len(ak["keys"].([]interface{})) != 0 {
		t.Fatalf("authorized_keys after revoke: %v", ak)
	}
	if msg := env.refused(logical.UpdateOperation, sshPath+"/private", nil, 409); !strings.Contains(msg, "revoked") {
		t.Fatalf("download after revoke refused with %q", msg)
	}

	hist := env.ok(logical.ReadOperation, sshPath+"/history", nil)["history"].([]interface{})
	h := hist[0].(map[string]interface{})
	if h["operation"] != "revoke" || h["trigger"] != triggerEvent || h["incident_id"] != "INC-2026-007" ||
		h["reason"] != "laptop stolen" || h["actor"].(map[string]interface{})["entity_id"] != "entity-1234" {
		t.Fatalf("revoke history entry %v", h)
	}

	// Revoked stays revoked: the scheduler does not rotate it back to life,
	// even when the rotation is long overdue.
	env.clock.Advance(100 * day)
	env.tick()
	if v := env.ok(logical.ReadOperation, sshPath, nil)["version"]; v != 2 {
		t.Fatalf("the scheduler rotated a revoked key (version %v)", v)
	}

	// A second revoke has nothing left to revoke and records nothing.
	resp, err := env.do(logical.UpdateOperation, sshPath+"/revoke", map[string]interface{}{"reason": "again"})
	if err != nil || resp.IsError() || len(resp.Warnings) != 1 {
		t.Fatalf("second revoke: %v, %v", resp, err)
	}
	if n := len(env.ok(logical.ReadOperation, sshPath+"/history", nil)["history"].([]interface{})); n != len(hist) {
		t.Fatalf("second revoke added history (%d entries, had %d)", n, len(hist))
	}

	// Only a rotation brings a valid key back; the revoked ones stay out.
	env.ok(logical.UpdateOperation, sshPath+"/rotate", map[string]interface{}{"reason": "after incident"})
	ak = env.ok(logical.ReadOperation, sshPath+"/authorized_keys", nil)
	keys := ak["keys"].([]interface{})
	if len(keys) != 1 || keys[0].(map[string]interface{})["version"] != 3 {
		t.Fatalf("authorized_keys after rotating a revoked key: %v", keys)
	}
	if v := env.download(sshPath, "")["version"]; v != 3 {
		t.Fatalf("download after rotation gave version %v", v)
	}
}

func TestRevoke_BadRequests(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	if msg := env.badRequest(logical.UpdateOperation, sshPath+"/revoke", nil); !strings.Contains(msg, "reason is required") {
		t.Errorf("revoke without a reason: %q", msg)
	}
	if msg := env.badRequest(logical.UpdateOperation, sshPath+"/revoke", map[string]interface{}{"reason": strings.Repeat("r", 513)}); !strings.Contains(msg, "reason is too long") {
		t.Errorf("revoke with a long reason: %q", msg)
	}
	if msg := env.badRequest(logical.UpdateOperation, "ssh/a..b/admin/revoke", map[string]interface{}{"reason": "x"}); !strings.Contains(msg, "tenant") {
		t.Errorf("revoke with a bad tenant: %q", msg)
	}
	if s := env.ok(logical.ReadOperation, sshPath, nil)["status"]; s != statusActive {
		t.Fatalf("refused revokes changed the status to %v", s)
	}
	if msg := env.refused(logical.UpdateOperation, "ssh/tenant-1/missing/revoke", map[string]interface{}{"reason": "x"}, 404); !strings.Contains(msg, "no SSH key at ssh/tenant-1/missing") {
		t.Errorf("revoke of a missing key: %q", msg)
	}
	// Types that do not opt in have no revoke path.
	env.ok(logical.UpdateOperation, "smtp/tenant-1/mail", smtpInput())
	if resp, err := env.do(logical.UpdateOperation, "smtp/tenant-1/mail/revoke", map[string]interface{}{"reason": "x"}); err == nil && (resp == nil || !resp.IsError()) {
		t.Fatalf("smtp answered a revoke: %v", resp)
	}
}
