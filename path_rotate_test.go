package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/sshkey"
)

// storedEntry reads a secret's raw storage entry, as a snapshot would hold it.
func (env *testEnv) storedEntry(kind, tenant, name string) *secretEntry {
	env.t.Helper()
	e, err := loadSecret(context.Background(), env.storage, kind, tenant, name)
	if err != nil || e == nil {
		env.t.Fatalf("stored %s/%s/%s: %v, %v", kind, tenant, name, e, err)
	}
	return e
}

// storedSSHKey is the raw stored material of one SSH version.
func (env *testEnv) storedSSHKey(version int) sshMaterial {
	env.t.Helper()
	v := env.storedEntry("ssh", "tenant-1", "admin").version(version)
	if v == nil {
		env.t.Fatalf("version %d is not stored", version)
	}
	m, err := sshMaterialOf(v)
	if err != nil {
		env.t.Fatal(err)
	}
	return m
}

const smtpPath = "smtp/tenant-1/mail-1"

func TestRotate_RevokePreviousEndsEveryValidSSHKeyAtOnce(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	env.ok(logical.UpdateOperation, sshPath+"/rotate", nil) // version 1 in grace
	got := env.ok(logical.UpdateOperation, sshPath+"/rotate", map[string]interface{}{
		"revoke_previous": true, "incident_id": "INC-7", "reason": "key leaked"})
	if !reflect.DeepEqual(got["revoked_versions"], []int{1, 2}) || got["version"] != 3 {
		t.Fatalf("rotate answered version %v, revoked_versions %v", got["version"], got["revoked_versions"])
	}
	keys := env.ok(logical.ReadOperation, sshPath+"/authorized_keys", nil)["keys"].([]interface{})
	if len(keys) != 1 || keys[0].(map[string]interface{})["version"] != 3 {
		t.Fatalf("authorized_keys after an incident rotation: %v", keys)
	}
	for _, n := range []int{1, 2} {
		if m := env.storedSSHKey(n); m.PrivateKey != "" {
			t.Fatalf("revoked version %d keeps its private key in storage", n)
		}
	}
	if env.storedSSHKey(3).PrivateKey == "" {
		t.Fatal("the new version has no private key")
	}
	hist := env.ok(logical.ReadOperation, sshPath+"/history", nil)["history"].([]interface{})
	revoke, rotate := hist[0].(map[string]interface{}), hist[1].(map[string]interface{})
	if revoke["operation"] != "revoke" || revoke["trigger"] != triggerEvent || revoke["incident_id"] != "INC-7" ||
		revoke["from_version"] != 1 || revoke["to_version"] != 2 {
		t.Fatalf("revocation row %v", revoke)
	}
	if rotate["operation"] != "rotate" || rotate["trigger"] != triggerEvent || rotate["incident_id"] != "INC-7" ||
		rotate["to_version"] != 3 || rotate["revoke_previous"] != true {
		t.Fatalf("rotation row %v", rotate)
	}
	// Without the flag a rotation revokes nothing and says so.
	if got := env.ok(logical.UpdateOperation, sshPath+"/rotate", nil); !reflect.DeepEqual(got["revoked_versions"], []int{}) {
		t.Fatalf("plain rotation revoked %v", got["revoked_versions"])
	}
}

func TestRotate_RevokePreviousDestroysTheOldSMTPPassword(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, smtpPath, smtpInput())
	got := env.ok(logical.UpdateOperation, smtpPath+"/rotate", map[string]interface{}{"revoke_previous": true})
	if !reflect.DeepEqual(got["revoked_versions"], []int{1}) {
		t.Fatalf("revoked_versions %v", got["revoked_versions"])
	}
	old := env.ok(logical.ReadOperation, smtpPath, map[string]interface{}{"version": 1})
	if _, has := old["password"]; has || old["status"] != statusRevoked {
		t.Fatalf("version 1 after revoke_previous: status %v, has password %v", old["status"], has)
	}
	if strings.Contains(string(env.storedEntry("smtp", "tenant-1", "mail-1").version(1).Material), "s3cret-Password-1") {
		t.Fatal("the revoked password is still in storage")
	}
	if cur := env.ok(logical.ReadOperation, smtpPath, nil); cur["password"] == "" || cur["status"] != statusActive {
		t.Fatalf("current version after revoke_previous: %v", cur["status"])
	}
}

func TestRotateTenant_RevokePreviousRevokesEverySecret(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	env.ok(logical.UpdateOperation, smtpPath, smtpInput())
	id := env.startJob("rotate-tenant/tenant-1", map[string]interface{}{"revoke_previous": true, "incident_id": "INC-8"})
	job := env.runJob(id)
	env.wantJobCounts(job, 2, 2, 0)
	if job["incident_id"] != "INC-8" || job["revoke_previous"] != true || job["trigger"] != triggerEvent {
		t.Fatalf("job %v", job)
	}
	for _, p := range []string{sshPath, smtpPath} {
		cur := env.ok(logical.ReadOperation, p, nil)
		if cur["version"] != 2 || cur["status"] != statusActive {
			t.Fatalf("%s after the job: version %v status %v", p, cur["version"], cur["status"])
		}
		if old := env.ok(logical.ReadOperation, p, map[string]interface{}{"version": 1}); old["status"] != statusRevoked {
			t.Fatalf("%s version 1 after revoke_previous: status %v", p, old["status"])
		}
		hist := env.ok(logical.ReadOperation, p+"/history", nil)["history"].([]interface{})
		revoke, rotate := hist[0].(map[string]interface{}), hist[1].(map[string]interface{})
		if revoke["operation"] != "revoke" || revoke["incident_id"] != "INC-8" || revoke["from_version"] != 1 ||
			revoke["to_version"] != 1 || revoke["job_id"] != id {
			t.Fatalf("%s revocation row %v", p, revoke)
		}
		if rotate["operation"] != "rotate" || rotate["trigger"] != triggerEvent || rotate["incident_id"] != "INC-8" ||
			rotate["revoke_previous"] != true || rotate["to_version"] != 2 || rotate["job_id"] != id {
			t.Fatalf("%s rotation row %v", p, rotate)
		}
	}
	if ak := env.ok(logical.ReadOperation, sshPath+"/authorized_keys", nil)["keys"].([]interface{}); len(ak) != 1 {
		t.Fatalf("authorized_keys keeps %d keys", len(ak))
	}
	if env.storedSSHKey(1).PrivateKey != "" {
		t.Fatal("the revoked SSH key keeps its private key in storage")
	}
	if strings.Contains(string(env.storedEntry("smtp", "tenant-1", "mail-1").version(1).Material), "s3cret-Password-1") {
		t.Fatal("the revoked password is still in storage")
	}
}

func TestVersions_MaxVersionsIsAHardCapInsideTheGraceWindow(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, map[string]interface{}{"max_versions": 2})
	for i := 0; i < 300; i++ {
		env.ok(logical.UpdateOperation, sshPath+"/rotate", nil)
	}
	if n := len(env.storedEntry("ssh", "tenant-1", "admin").Versions); n != 2 {
		t.Fatalf("%d versions kept, want 2", n)
	}
	if keys := env.ok(logical.ReadOperation, sshPath+"/authorized_keys", nil)["keys"].([]interface{}); len(keys) != 2 {
		t.Fatalf("authorized_keys lists %d keys, want 2", len(keys))
	}
}

func TestSaveSecret_RefusesAnEntryAboveTheBound(t *testing.T) {
	env := newTestEnv(t)
	e := &secretEntry{Kind: "smtp", Tenant: "tenant-1", Name: "big",
		Settings: json.RawMessage(`"` + strings.Repeat("x", maxEntryBytes) + `"`)}
	err := saveSecret(context.Background(), env.storage, e)
	if code := statusOf(logical.UpdateOperation, nil, err); code != 413 || !strings.Contains(err.Error(), "smtp/tenant-1/big") {
		t.Fatalf("oversized save: status %d, %v", code, err)
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Fatalf("an oversized entry was written: %v", keys)
	}
}

func TestVersions_LoweredMaxVersionsHidesAndThenRemovesOldVersions(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, smtpPath, smtpInput())
	env.ok(logical.UpdateOperation, smtpPath, map[string]interface{}{"password": "second-pw"})
	env.ok(logical.UpdateOperation, smtpPath, map[string]interface{}{"password": "third-pw"})
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"max_versions": 1})

	env.refused(logical.ReadOperation, smtpPath, map[string]interface{}{"version": 1}, 404)
	if h := env.ok(logical.ReadOperation, smtpPath+"/history", nil)["versions"].(map[string]interface{}); len(h) != 1 {
		t.Fatalf("history lists %d versions after max_versions=1", len(h))
	}
	env.tick() // the scheduler's scan persists the trim
	if n := len(env.storedEntry("smtp", "tenant-1", "mail-1").Versions); n != 1 {
		t.Fatalf("%d versions still stored after the scheduler pass", n)
	}

	// A per-secret lowering leaves storage with the write itself.
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"max_versions": 5})
	env.ok(logical.UpdateOperation, smtpPath, map[string]interface{}{"password": "fourth-pw"})
	env.ok(logical.UpdateOperation, smtpPath, map[string]interface{}{"max_versions": 1})
	if n := len(env.storedEntry("smtp", "tenant-1", "mail-1").Versions); n != 1 {
		t.Fatalf("%d versions stored after a per-secret max_versions=1", n)
	}
}

func TestVersions_MaxVersionsSentWithNewMaterialBoundsThatWrite(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, smtpPath, smtpInput())
	env.ok(logical.UpdateOperation, smtpPath, map[string]interface{}{"password": "second-pw"})
	env.ok(logical.UpdateOperation, smtpPath, map[string]interface{}{"password": "third-pw", "max_versions": 1})
	if e := env.storedEntry("smtp", "tenant-1", "mail-1"); len(e.Versions) != 1 || e.Versions[0].Version != 3 {
		t.Fatalf("stored versions after password+max_versions=1: %d", len(e.Versions))
	}
}

func TestSSH_PrivateKeysLeaveStorageWhenNoLongerValid(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	env.ok(logical.UpdateOperation, sshPath+"/rotate", nil)
	// Only the current key is ever downloadable: a replaced one keeps its
	// public key for authorized_keys during the grace period, nothing more.
	if env.storedSSHKey(1).PrivateKey != "" || env.storedSSHKey(1).PublicKey == "" {
		t.Fatal("a replaced key keeps its private key in storage")
	}
	env.clock.Advance(25 * time.Hour)
	env.tick()
	if env.storedSSHKey(1).PrivateKey != "" {
		t.Fatal("an expired key keeps its private key in storage")
	}

	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"ssh_grace_period": 0})
	env.ok(logical.UpdateOperation, sshPath+"/rotate", nil)
	if env.storedSSHKey(2).PrivateKey != "" {
		t.Fatal("a key expired at once (grace 0) keeps its private key")
	}

	env.ok(logical.UpdateOperation, sshPath+"/revoke", map[string]interface{}{"reason": "lost"})
	if raw := env.storedEntry("ssh", "tenant-1", "admin"); strings.Contains(string(raw.Versions[len(raw.Versions)-1].Material), "PRIVATE KEY") {
		t.Fatal("a revoked key keeps its private key in storage")
	}
}

// TestSaveSecret_LargestEntryFitsTheBound builds the largest entry the
// request bounds allow: max_versions at its limit, every version an imported
// RSA-8192 key inside its grace period (only the current one keeps its
// private key: see destroyReplacedSSHPrivateKeys),
// the longest tenant and name, a full history of rows with the longest
// reason and incident_id. It must stay under maxEntryBytes, so the size guard
// can never block a revoke (which only shrinks an entry).
func TestSaveSecret_LargestEntryFitsTheBound(t *testing.T) {
	env := newTestEnv(t)
	pemText, err := os.ReadFile("testdata/rsa8192")
	if err != nil {
		t.Fatal(err)
	}
	key, err := sshkey.ParsePrivate(string(pemText), "")
	if err != nil {
		t.Fatal(err)
	}
	long := func(n int) string { return "t" + strings.Repeat("x", n-1) }
	kind := sshKind()
	cfg := defaultConfig()
	cfg.MaxVersions = maxVersionsLimit
	cfg.HistoryLimit = maxLogLimit
	pol := sshKind().defaults
	pol.GracePeriod = maxGracePeriod
	cfg.Policies = map[string]typePolicy{"ssh": pol}
	now := env.clock.Now()
	e := &secretEntry{Kind: "ssh", Tenant: long(128), Name: long(128), CreatedTime: now,
		Settings: json.RawMessage(`{"one_time_download":true,"download_count":999999,"last_downloaded":"2026-11-01T09:00:00Z","last_downloaded_by":{"display_name":"` + long(256) + `","entity_id":"` + long(36) + `"}}`)}
	by := actor{DisplayName: long(256), EntityID: long(36)}
	for i := 0; i < maxVersionsLimit+5; i++ {
		m, err := newSSHMaterial(key, sshKeyComment(e, e.CurrentVersion+1), true)
		if err != nil {
			t.Fatal(err)
		}
		m.Downloads = 999999
		r := rotation{Trigger: triggerEvent, Reason: long(maxReasonLen), IncidentID: long(maxIncidentIDLen), Actor: by}
		if err := e.rotateTo(m, kind, cfg, r, now); err != nil {
			t.Fatal(err)
		}
	}
	if len(e.Versions) != maxVersionsLimit || len(e.History) != maxLogLimit {
		t.Fatalf("built %d versions and %d history rows, want %d and %d", len(e.Versions), len(e.History), maxVersionsLimit, maxLogLimit)
	}
	for _, v := range e.Versions[:len(e.Versions)-1] {
		if v.Status != statusGrace {
			t.Fatalf("version %d is %s: the worst case keeps every version in authorized_keys", v.Version, v.Status)
		}
	}
	if err := saveSecret(context.Background(), env.storage, e); err != nil {
		t.Fatalf("the largest allowed entry is refused: %v", err)
	}
	raw, _ := env.storage.Get(context.Background(), e.storageKey())
	t.Logf("largest entry: %d bytes, bound %d bytes (%.0f%%)", len(raw.Value), maxEntryBytes, 100*float64(len(raw.Value))/maxEntryBytes)
	if _, err := e.revokeLive(kind, rotation{Trigger: triggerEvent, Reason: long(maxReasonLen), Actor: by}, now, cfg); err != nil {
		t.Fatal(err)
	}
	if err := saveSecret(context.Background(), env.storage, e); err != nil {
		t.Fatalf("revoking the largest entry is refused: %v", err)
	}
}

func TestDurations_HaveUpperBounds(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, smtpPath, smtpInput())
	const tooLong = 290 * 365 * 24 * 3600
	for _, tc := range []struct {
		path, field string
		secs        int
		bound       string
	}{
		{"config", "ssh_grace_period", tooLong, "30 days"},
		{"config", "dkim_grace_period", 31 * 24 * 3600, "30 days"},
		{"config", "smtp_rotation_period", 3651 * 24 * 3600, "3650 days"},
		{"config", "ssh_alert_threshold", tooLong, "3650 days"},
		{smtpPath, "rotation_period", 3651 * 24 * 3600, "3650 days"},
	} {
		msg := env.badRequest(logical.UpdateOperation, tc.path, map[string]interface{}{tc.field: tc.secs})
		if !strings.Contains(msg, tc.field) || !strings.Contains(msg, tc.bound) {
			t.Errorf("%s %s=%d refused with %q, want the field and %s", tc.path, tc.field, tc.secs, msg, tc.bound)
		}
	}
	// The bounds themselves are accepted.
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"ssh_grace_period": "720h", "smtp_rotation_period": "87600h"})
	env.ok(logical.UpdateOperation, smtpPath, map[string]interface{}{"rotation_period": "87600h"})
}

// A bulk job larger than one background pass (jobBudget) runs to the end
// over several passes, rotating what its status filter selects when it
// reaches each secret, and skipping the rest.
func TestRotateBulk_OverdueOnlyOverSeveralPasses(t *testing.T) {
	env := newTestEnv(t)
	const each = 75
	for i := 0; i < each; i++ {
		env.ok(logical.UpdateOperation, fmt.Sprintf("smtp/t%d/old-%02d", i%3, i), smtpInput())
	}
	env.clock.Advance(31 * day)
	for i := 0; i < each; i++ {
		env.ok(logical.UpdateOperation, fmt.Sprintf("smtp/t%d/new-%02d", i%3, i), smtpInput())
	}
	id := env.startJob("rotate/bulk", map[string]interface{}{"status": "overdue", "incident_id": "INC-77", "types": "smtp"})
	job := env.runJob(id)
	env.wantJobCounts(job, 2*each, each, 0)
	if job["skipped"] != each || job["done"] != 2*each {
		t.Fatalf("job skipped %v, done %v", job["skipped"], job["done"])
	}
	for i := 0; i < each; i++ {
		old := env.storedEntry("smtp", fmt.Sprintf("t%d", i%3), fmt.Sprintf("old-%02d", i))
		fresh := env.storedEntry("smtp", fmt.Sprintf("t%d", i%3), fmt.Sprintf("new-%02d", i))
		if old.CurrentVersion != 2 || old.LastJob != id || fresh.CurrentVersion != 1 {
			t.Fatalf("secret %d: overdue one at version %d (last_job %q), fresh one at %d", i, old.CurrentVersion, old.LastJob, fresh.CurrentVersion)
		}
	}
	if page := env.status(map[string]interface{}{"status": rotationOverdue}); page["count"] != 0 {
		t.Fatalf("overdue after the job: %v", statusPaths(page))
	}
}
