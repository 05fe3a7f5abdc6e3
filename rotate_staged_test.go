package penguinmails

import (
	"fmt"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// A staged rotation (a DKIM key with activation=delay) answers with the
// version it made, pending, and the one still serving as previous_version;
// a rotation that finishes at once answers as before.
func TestRotate_StagedRotationAnswersThePendingVersion(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, dkimPath+"/activate", nil)

	rot := env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
	if fmt.Sprintf("%v %v %v", rot["version"], rot["previous_version"], rot["status"]) != "2 1 pending" {
		t.Fatalf("staged rotate answered version %v previous_version %v status %v, want 2 1 pending",
			rot["version"], rot["previous_version"], rot["status"])
	}
	if got := env.ok(logical.ReadOperation, dkimPath, nil); fmt.Sprintf("%v %v", got["version"], got["status"]) != "1 active" {
		t.Fatalf("read after a staged rotate: version %v status %v, want 1 active", got["version"], got["status"])
	}

	env.ok(logical.UpdateOperation, dkimPath+"/activate", nil)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"activation": "immediate"})
	rot = env.ok(logical.UpdateOperation, dkimPath+"/rotate", nil)
	if _, staged := rot["status"]; fmt.Sprint(rot["version"], rot["previous_version"]) != "3 2" || staged {
		t.Fatalf("immediate rotate answered version %v previous_version %v status %v, want 3 2 and no status",
			rot["version"], rot["previous_version"], rot["status"])
	}
}
