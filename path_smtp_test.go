package penguinmails

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"
)

func smtpInput() map[string]interface{} {
	return map[string]interface{}{
		"username": "admin@example.com", "password": "s3cret-Password-1",
		"host": "smtp.example.com", "port": 587, "encryption": "starttls",
	}
}

// writeAutoRotating creates an SMTP credential with auto_rotate on.
func (env *testEnv) writeAutoRotating(path string) {
	env.t.Helper()
	in := smtpInput()
	in["auto_rotate"] = true
	env.ok(logical.UpdateOperation, path, in)
}

// usePasswordPolicy makes config generate SMTP passwords with a policy that
// the test can then take away (delete env.system.PasswordPolicies[name]).
func (env *testEnv) usePasswordPolicy(name, password string) {
	env.t.Helper()
	env.system.SetPasswordPolicy(name, func() (string, error) { return password, nil })
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"password_policy": name})
}

// dueRotationThatFails leaves an auto-rotating credential overdue whose
// password policy has disappeared from Vault, so each scheduled attempt
// fails until the test restores "smtp-policy".
func (env *testEnv) dueRotationThatFails(path string) {
	env.t.Helper()
	env.usePasswordPolicy("smtp-policy", "FromPolicy-0123456789-0123456789")
	env.writeAutoRotating(path)
	delete(env.system.PasswordPolicies, "smtp-policy")
	env.clock.Advance(31 * day)
}

func TestSMTP_CreateReadRotateListDelete(t *testing.T) {
	env := newTestEnv(t)
	const path = "smtp/tenant-1/mail-1"

	written := env.ok(logical.UpdateOperation, path, smtpInput())
	if written["version"] != 1 {
		t.Fatalf("first write: version = %v, want 1", written["version"])
	}
	if _, leaked := written["password"]; leaked {
		t.Fatal("write response echoes the password")
	}

	got := env.ok(logical.ReadOperation, path, nil)
	want := map[string]interface{}{
		"username": "admin@example.com", "password": "s3cret-Password-1", "host": "smtp.example.com",
		"port": 587, "encryption": "starttls", "version": 1, "status": statusActive,
		"rotation_period": "720h", "rotation_status": rotationHealthy,
		"created_time": "2026-11-01T09:00:00Z", "last_rotated": "2026-11-01T09:00:00Z",
		"next_rotation": "2026-12-01T09:00:00Z", "updated_time": "2026-11-01T09:00:00Z",
	}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("read %s = %#v, want %#v", k, got[k], v)
		}
	}

	env.clock.Advance(time.Hour)
	rot := env.ok(logical.UpdateOperation, path+"/rotate", map[string]interface{}{"reason": "quarterly review"})
	if rot["version"] != 2 || rot["previous_version"] != 1 {
		t.Fatalf("rotate answered %v", rot)
	}
	cur := env.ok(logical.ReadOperation, path, nil)
	old := env.ok(logical.ReadOperation, path, map[string]interface{}{"version": 1})
	if cur["version"] != 2 || old["version"] != 1 {
		t.Fatalf("versions: current %v, old %v", cur["version"], old["version"])
	}
	if old["password"] != "s3cret-Password-1" {
		t.Fatalf("version 1 password changed to %v", old["password"])
	}
	newPW := cur["password"].(string)
	if newPW == old["password"] || len(newPW) < 32 {
		t.Fatalf("rotated password %q is not a new password of at least 32 characters", newPW)
	}
	if cur["username"] != "admin@example.com" || cur["host"] != "smtp.example.com" {
		t.Fatalf("rotation lost the username or settings: %v", cur)
	}
	if old["status"] != statusExpired || cur["status"] != statusActive {
		t.Fatalf("statuses: old %v, current %v", old["status"], cur["status"])
	}
	if cur["last_rotated"] != "2026-11-01T10:00:00Z" || cur["next_rotation"] != "2026-12-01T10:00:00Z" {
		t.Fatalf("rotation times after rotate: %v / %v", cur["last_rotated"], cur["next_rotation"])
	}

	hist := env.ok(logical.ReadOperation, path+"/history", nil)["history"].([]interface{})
	if len(hist) != 1 {
		t.Fatalf("history has %d entries, want 1", len(hist))
	}
	h := hist[0].(map[string]interface{})
	if h["trigger"] != triggerManual || h["reason"] != "quarterly review" || h["from_version"] != 1 || h["to_version"] != 2 ||
		h["result"] != "success" || h["actor"].(map[string]interface{})["entity_id"] != "entity-1234" {
		t.Fatalf("history entry %v", h)
	}

	env.ok(logical.UpdateOperation, "smtp/tenant-2/relay", smtpInput())
	if keys := env.ok(logical.ListOperation, "smtp/tenant-1/", nil)["keys"]; !reflect.DeepEqual(keys, []string{"mail-1"}) {
		t.Fatalf("list tenant-1 = %v", keys)
	}
	if keys := env.ok(logical.ListOperation, "smtp/", nil)["keys"]; !reflect.DeepEqual(keys, []string{"tenant-1", "tenant-2"}) {
		t.Fatalf("list tenants = %v", keys)
	}

	env.ok(logical.DeleteOperation, path, nil)
	resp, err := env.do(logical.ReadOperation, path, nil)
	if err != nil || resp != nil {
		t.Fatalf("read after delete: %v, %v (want a 404)", resp, err)
	}
	if keys := env.ok(logical.ListOperation, "smtp/", nil)["keys"]; !reflect.DeepEqual(keys, []string{"tenant-2"}) {
		t.Fatalf("tenants after delete = %v", keys)
	}
}

func TestSMTP_RejectsBadInputAndStoresNothing(t *testing.T) {
	cases := []struct {
		name, path string
		change     map[string]interface{}
		drop       string
		mention    []string
	}{
		{"port too large", "smtp/t1/m1", map[string]interface{}{"port": 70000}, "", []string{"port", "1 and 65535"}},
		{"port zero", "smtp/t1/m1", map[string]interface{}{"port": 0}, "", []string{"port"}},
		{"unknown encryption", "smtp/t1/m1", map[string]interface{}{"encryption": "ssl3"}, "", []string{"encryption", "none, starttls, tls"}},
		{"missing host", "smtp/t1/m1", nil, "host", []string{"host is required"}},
		{"missing username", "smtp/t1/m1", nil, "username", []string{"username is required"}},
		{"bad host", "smtp/t1/m1", map[string]interface{}{"host": "smtp example.com"}, "", []string{"host"}},
		{"bad webmail", "smtp/t1/m1", map[string]interface{}{"webmail_url": "ftp://x"}, "", []string{"webmail_url", "http"}},
		{"webmail too long", "smtp/t1/m1", map[string]interface{}{"webmail_url": "https://mail.example.com/" + strings.Repeat("a", 2048)}, "", []string{"webmail_url", "2048"}},
		{"empty password", "smtp/t1/m1", map[string]interface{}{"password": ""}, "", []string{"password"}},
		{"dot-dot tenant", "smtp/../x/m1", nil, "", []string{"tenant", `".."`}},
		{"tenant with dot-dot inside", "smtp/a..b/m1", nil, "", []string{"tenant", "^[A-Za-z0-9]"}},
		{"tenant starting with dash", "smtp/-t/m1", nil, "", []string{"tenant"}},
		{"name too long", "smtp/t1/" + strings.Repeat("n", 129), nil, "", []string{"name"}},
		{"name with space", "smtp/t1/a b", nil, "", []string{"name"}},
		{"negative rotation period", "smtp/t1/m1", map[string]interface{}{"rotation_period": -5}, "", []string{"rotation_period"}},
		{"port not a number", "smtp/t1/m1", map[string]interface{}{"port": "smtp"}, "", []string{"port"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t)
			in := smtpInput()
			for k, v := range tc.change {
				in[k] = v
			}
			delete(in, tc.drop)
			msg := env.badRequest(logical.UpdateOperation, tc.path, in)
			for _, m := range tc.mention {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not mention %q", msg, m)
				}
			}
			if strings.Contains(msg, "s3cret") {
				t.Errorf("message leaks the password: %q", msg)
			}
			if keys := env.storedKeys(); len(keys) != 0 {
				t.Errorf("bad input stored %v", keys)
			}
		})
	}
}

func TestSMTP_BadUpdateLeavesSecretUnchanged(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput())
	before, _ := env.storage.Get(context.Background(), secretStorageKey("smtp", "t1", "m1"))
	env.badRequest(logical.UpdateOperation, "smtp/t1/m1", map[string]interface{}{"password": "new-one", "port": 70000})
	after, _ := env.storage.Get(context.Background(), secretStorageKey("smtp", "t1", "m1"))
	if string(before.Value) != string(after.Value) {
		t.Fatal("a refused update changed the stored secret")
	}
}

// Writing back the generated password is no change: the credential decides,
// not whether Vault or the caller chose it.
func TestSMTP_SamePasswordOverAGeneratedOneMakesNoVersion(t *testing.T) {
	env := newTestEnv(t)
	in := smtpInput()
	delete(in, "password")
	env.ok(logical.UpdateOperation, smtpPath, in)
	pw := env.ok(logical.ReadOperation, smtpPath, nil)["password"].(string)
	env.ok(logical.UpdateOperation, smtpPath, map[string]interface{}{"password": pw})
	if got := env.ok(logical.ReadOperation, smtpPath, nil); got["version"] != 1 || got["password_generated"] != true {
		t.Fatalf("writing back the generated password: version %v, password_generated %v", got["version"], got["password_generated"])
	}
}

func TestSMTP_UpdateSemantics(t *testing.T) {
	env := newTestEnv(t)
	const path = "smtp/t1/m1"
	env.ok(logical.UpdateOperation, path, smtpInput())

	// Settings only: same version, new settings.
	env.clock.Advance(time.Minute)
	env.ok(logical.UpdateOperation, path, map[string]interface{}{"port": 465, "encryption": "tls"})
	got := env.ok(logical.ReadOperation, path, nil)
	if got["version"] != 1 || got["port"] != 465 || got["encryption"] != "tls" || got["last_rotated"] != "2026-11-01T09:00:00Z" {
		t.Fatalf("settings-only update: %v", got)
	}

	// Same password again: still no new version.
	env.ok(logical.UpdateOperation, path, map[string]interface{}{"password": "s3cret-Password-1"})
	if v := env.ok(logical.ReadOperation, path, nil)["version"]; v != 1 {
		t.Fatalf("rewriting the same password made version %v", v)
	}

	// New password: new version, counted as a rotation.
	env.clock.Advance(time.Minute)
	env.ok(logical.UpdateOperation, path, map[string]interface{}{"password": "another-Secret-2"})
	got = env.ok(logical.ReadOperation, path, nil)
	if got["version"] != 2 || got["password"] != "another-Secret-2" || got["port"] != 465 || got["last_rotated"] != "2026-11-01T09:02:00Z" {
		t.Fatalf("password update: %v", got)
	}
}

func TestSMTP_GeneratesPasswordWhenLeftOut(t *testing.T) {
	env := newTestEnv(t)
	in := smtpInput()
	delete(in, "password")
	env.ok(logical.UpdateOperation, "smtp/t1/m1", in)
	got := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)
	pw := got["password"].(string)
	if len(pw) < 32 || got["password_generated"] != true {
		t.Fatalf("generated password %q (generated=%v)", pw, got["password_generated"])
	}
}

func TestSMTP_PasswordPolicy(t *testing.T) {
	env := newTestEnv(t)
	env.system.SetPasswordPolicy("smtp-policy", func() (string, error) { return "FromPolicy-0123456789-0123456789", nil })

	msg := env.badRequest(logical.UpdateOperation, "config", map[string]interface{}{"password_policy": "missing"})
	if !strings.Contains(msg, "password_policy") {
		t.Fatalf("unknown policy message %q", msg)
	}
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"password_policy": "smtp-policy"})
	env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput())
	env.ok(logical.UpdateOperation, "smtp/t1/m1/rotate", nil)
	if pw := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)["password"]; pw != "FromPolicy-0123456789-0123456789" {
		t.Fatalf("rotation ignored the password policy: %v", pw)
	}
}

func TestSMTP_RotationStatusFollowsClock(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput())
	steps := []struct {
		advance time.Duration
		want    string
	}{
		{22 * day, rotationHealthy},
		{day + time.Second, rotationDueSoon}, // 7 days minus 1 s before next_rotation
		{7 * day, rotationOverdue},
	}
	for _, s := range steps {
		env.clock.Advance(s.advance)
		if got := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)["rotation_status"]; got != s.want {
			t.Fatalf("after %v: rotation_status = %v, want %v", s.advance, got, s.want)
		}
	}
	// A per-secret period overrides the default.
	env.ok(logical.UpdateOperation, "smtp/t1/m1", map[string]interface{}{"rotation_period": "90d"})
	got := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)
	if got["rotation_status"] != rotationHealthy || got["rotation_period"] != "2160h" {
		t.Fatalf("with rotation_period=90d: %v / %v", got["rotation_status"], got["rotation_period"])
	}
}

func TestVersions_MaxVersionsTrimsOldest(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput())
	for i := 0; i < 6; i++ {
		env.ok(logical.UpdateOperation, "smtp/t1/m1/rotate", nil)
	}
	got := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)
	versions := got["versions"].(map[string]interface{})
	if got["version"] != 7 || len(versions) != 5 || versions["3"] == nil || versions["2"] != nil {
		t.Fatalf("after 7 versions with max 5: version %v, kept %v", got["version"], versions)
	}
	resp, err := env.do(logical.ReadOperation, "smtp/t1/m1", map[string]interface{}{"version": 2})
	if code := statusOf(logical.ReadOperation, resp, err); code != 404 {
		t.Fatalf("reading a trimmed version: status %d, want 404", code)
	}
	if !strings.Contains(err.Error(), "3 to 7") {
		t.Fatalf("message %q does not say which versions are kept", err)
	}

	// A per-secret max_versions lowers retention on the next version.
	env.ok(logical.UpdateOperation, "smtp/t1/m1", map[string]interface{}{"max_versions": 2})
	env.ok(logical.UpdateOperation, "smtp/t1/m1/rotate", nil)
	if n := len(env.ok(logical.ReadOperation, "smtp/t1/m1", nil)["versions"].(map[string]interface{})); n != 2 {
		t.Fatalf("max_versions=2 kept %d versions", n)
	}
}

func TestRotate_MissingSecretIs404(t *testing.T) {
	env := newTestEnv(t)
	resp, err := env.do(logical.UpdateOperation, "smtp/t1/nope/rotate", map[string]interface{}{"reason": "x"})
	if code := statusOf(logical.ReadOperation, resp, err); code != 404 {
		t.Fatalf("status %d, want 404 (%v)", code, err)
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Fatalf("rotate of a missing secret stored %v", keys)
	}
}

func TestRotate_IncidentRecordsEventTrigger(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput())
	env.ok(logical.UpdateOperation, "smtp/t1/m1/rotate", map[string]interface{}{"reason": "leak", "incident_id": "INC-2026-001"})
	h := env.ok(logical.ReadOperation, "smtp/t1/m1/history", nil)["history"].([]interface{})[0].(map[string]interface{})
	if h["trigger"] != triggerEvent || h["incident_id"] != "INC-2026-001" {
		t.Fatalf("history %v", h)
	}
	msg := env.badRequest(logical.UpdateOperation, "smtp/t1/m1/rotate", map[string]interface{}{"reason": strings.Repeat("r", maxReasonLen+1)})
	if !strings.Contains(msg, "reason") {
		t.Fatalf("message %q", msg)
	}
}

func TestRotateTenant_RotatesEverySecretOfTheTenantOnly(t *testing.T) {
	env := newTestEnv(t)
	for _, p := range []string{"smtp/t1/a", "smtp/t1/b", "smtp/t2/a"} {
		env.ok(logical.UpdateOperation, p, smtpInput())
	}
	id := env.startJob("rotate-tenant/t1", map[string]interface{}{"reason": "breach", "incident_id": "INC-9"})
	env.wantJobCounts(env.runJob(id), 2, 2, 0)
	for path, want := range map[string]int{"smtp/t1/a": 2, "smtp/t1/b": 2, "smtp/t2/a": 1} {
		if v := env.ok(logical.ReadOperation, path, nil)["version"]; v != want {
			t.Errorf("%s at version %v, want %d", path, v, want)
		}
	}
	for _, path := range []string{"smtp/t1/a", "smtp/t1/b"} {
		h := env.ok(logical.ReadOperation, path+"/history", nil)["history"].([]interface{})[0].(map[string]interface{})
		if h["trigger"] != triggerEvent || h["incident_id"] != "INC-9" || h["reason"] != "breach" || h["job_id"] != id ||
			h["revoke_previous"] != false {
			t.Errorf("%s history row %v", path, h)
		}
	}
	msg := env.badRequest(logical.UpdateOperation, "rotate-tenant/t1", map[string]interface{}{"types": "smtp,bogus"})
	if !strings.Contains(msg, "types") || !strings.Contains(msg, "bogus") {
		t.Fatalf("message %q", msg)
	}
}

func TestRotate_StorageFailureKeepsPreviousVersion(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput())
	env.storage.FailPut(true)
	if _, err := env.do(logical.UpdateOperation, "smtp/t1/m1/rotate", nil); err == nil {
		t.Fatal("rotate reported success although storage refused the write")
	}
	env.storage.FailPut(false)
	got := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)
	if got["version"] != 1 || got["password"] != "s3cret-Password-1" {
		t.Fatalf("after a failed rotation: version %v", got["version"])
	}
	if n := len(env.ok(logical.ReadOperation, "smtp/t1/m1/history", nil)["history"].([]interface{})); n != 0 {
		t.Fatalf("a failed rotation left %d history entries", n)
	}
}

func TestPeriodic_AutoRotatesOverdueSecretsOnly(t *testing.T) {
	env := newTestEnv(t)
	env.writeAutoRotating("smtp/t1/auto")
	env.ok(logical.UpdateOperation, "smtp/t1/manual", smtpInput())

	env.clock.Advance(29 * day)
	env.tick()
	if v := env.ok(logical.ReadOperation, "smtp/t1/auto", nil)["version"]; v != 1 {
		t.Fatalf("rotated before the period elapsed: version %v", v)
	}

	env.clock.Advance(day)
	env.tick()
	got := env.ok(logical.ReadOperation, "smtp/t1/auto", nil)
	if got["version"] != 2 || got["rotation_status"] != rotationHealthy || got["last_rotation_by"] != schedulerActor.DisplayName {
		t.Fatalf("auto secret after its period: %v", got)
	}
	h := env.ok(logical.ReadOperation, "smtp/t1/auto/history", nil)["history"].([]interface{})[0].(map[string]interface{})
	if h["trigger"] != triggerTime {
		t.Fatalf("history trigger %v, want time", h["trigger"])
	}
	if v := env.ok(logical.ReadOperation, "smtp/t1/manual", nil)["version"]; v != 1 {
		t.Fatalf("secret without auto_rotate was rotated to version %v", v)
	}

	// A second tick in the same minute does nothing more.
	env.tick()
	if v := env.ok(logical.ReadOperation, "smtp/t1/auto", nil)["version"]; v != 2 {
		t.Fatalf("second tick rotated again: version %v", v)
	}
}

func TestPeriodic_RebuildsScheduleFromStorage(t *testing.T) {
	env := newTestEnv(t)
	env.writeAutoRotating("smtp/t1/auto")

	// A new backend on the same storage (a restart or a failover) knows
	// nothing in memory; due-ness must come from the stored timestamps.
	restarted := newTestEnv(t)
	restarted.storage = env.storage
	restarted.clock = env.clock
	restarted.b.clock = env.clock.Now
	env.clock.Advance(31 * day)
	restarted.tick()
	if v := restarted.ok(logical.ReadOperation, "smtp/t1/auto", nil)["version"]; v != 2 {
		t.Fatalf("after restart and period: version %v, want 2", v)
	}
}

func TestPeriodic_ConfigChangeMovesDueTimes(t *testing.T) {
	env := newTestEnv(t)
	env.writeAutoRotating("smtp/t1/auto")
	env.tick() // loads the schedule with the 30-day period
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"smtp_rotation_period": "2d", "smtp_alert_threshold": "1d"})
	env.clock.Advance(2*day + time.Minute)
	env.tick()
	if v := env.ok(logical.ReadOperation, "smtp/t1/auto", nil)["version"]; v != 2 {
		t.Fatalf("shortened period not applied: version %v", v)
	}
}

func TestPeriodic_DoesNotWriteOnPerformanceStandby(t *testing.T) {
	env := newTestEnv(t)
	env.writeAutoRotating("smtp/t1/auto")
	env.system.ReplicationStateVal = consts.ReplicationPerformanceStandby
	env.clock.Advance(60 * day)
	env.tick()
	raw, _ := env.storage.Get(context.Background(), secretStorageKey("smtp", "t1", "auto"))
	var e secretEntry
	if err := json.Unmarshal(raw.Value, &e); err != nil {
		t.Fatal(err)
	}
	if e.CurrentVersion != 1 {
		t.Fatalf("a performance standby rotated the secret to version %d", e.CurrentVersion)
	}
}

func TestSecrets_NeverLogged(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput())
	env.storage.FailPut(true)
	_, _ = env.do(logical.UpdateOperation, "smtp/t1/m1/rotate", nil)
	env.storage.FailPut(false)
	auto := map[string]interface{}{"auto_rotate": true}
	env.ok(logical.UpdateOperation, "smtp/t1/m1", auto)
	env.clock.Advance(40 * day)
	env.tick()
	for v := 1; v <= 2; v++ {
		pw := env.ok(logical.ReadOperation, "smtp/t1/m1", map[string]interface{}{"version": v})["password"].(string)
		if strings.Contains(env.logs.String(), pw) {
			t.Fatalf("version %d's password appears in the plugin log", v)
		}
	}
}

func TestHelp_ExplainsEverySMTPField(t *testing.T) {
	env := newTestEnv(t)
	resp, err := env.do(logical.HelpOperation, "smtp/t1/m1", nil)
	if err != nil {
		t.Fatal(err)
	}
	help := resp.Data["help"].(string)
	for _, f := range []string{"username", "password", "host", "port", "encryption", "webmail_url", "rotation_period", "version", "auto_rotate", "max_versions"} {
		if !strings.Contains(help, "\n"+f) && !strings.Contains(help, " "+f+" ") {
			t.Errorf("path-help does not explain %q", f)
		}
	}
}

func TestRotationStatus_ListsOverdueAndDueSoon(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/old", smtpInput())
	env.clock.Advance(25 * day)
	env.ok(logical.UpdateOperation, "smtp/t2/mid", smtpInput())
	env.clock.Advance(20 * day) // old: 45 days (overdue); mid: 20 days (healthy)
	env.ok(logical.UpdateOperation, "smtp/t2/new", smtpInput())
	env.ok(logical.UpdateOperation, "smtp/t2/mid", map[string]interface{}{"rotation_period": "24d"}) // due in 4 days

	got := env.ok(logical.ReadOperation, "rotation/status", nil)
	if paths := statusPaths(got); !reflect.DeepEqual(paths, []string{"smtp/t1/old", "smtp/t2/mid", "smtp/t2/new"}) {
		t.Fatalf("rotation/status lists %v, want soonest due first", paths)
	}
	for status, want := range map[string][]string{
		rotationOverdue: {"smtp/t1/old"}, rotationDueSoon: {"smtp/t2/mid"}, rotationHealthy: {"smtp/t2/new"},
	} {
		got := env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"status": status})
		if paths := statusPaths(got); !reflect.DeepEqual(paths, want) {
			t.Errorf("status=%s lists %v, want %v", status, paths, want)
		}
		for _, r := range got["secrets"].([]interface{}) {
			if r.(map[string]interface{})["status"] != status {
				t.Errorf("status=%s row %v", status, r)
			}
		}
	}
	if paths := statusPaths(env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"tenant": "t2"})); !reflect.DeepEqual(paths, []string{"smtp/t2/mid", "smtp/t2/new"}) {
		t.Fatalf("tenant filter lists %v", paths)
	}
	env.badRequest(logical.ReadOperation, "rotation/status", map[string]interface{}{"tenant": "../x"})
}

// statusPaths lists the paths of a rotation/status page, in order.
func statusPaths(page map[string]interface{}) []string {
	out := []string{}
	for _, r := range page["secrets"].([]interface{}) {
		out = append(out, r.(map[string]interface{})["path"].(string))
	}
	return out
}

func TestUnmatchedPaths_ExplainTheLayout(t *testing.T) {
	env := newTestEnv(t)
	// What `vault write penguinmails/smtp/../x/m1` becomes after Vault
	// resolves the ".." segment.
	msg := env.badRequest(logical.UpdateOperation, "x/m1", smtpInput())
	for _, want := range []string{`"x/m1"`, "{type}/{tenant}/{name}", "smtp", `".."`} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	for _, path := range []string{"x/m1", "smtp/t1/m1/bogus"} {
		resp, err := env.do(logical.ReadOperation, path, nil)
		if code := statusOf(logical.ReadOperation, resp, err); code != 404 {
			t.Errorf("read %s: status %d, want 404", path, code)
		}
		// PATCH too gets the layout explained, not a bare 405.
		resp, err = env.do(logical.PatchOperation, path, map[string]interface{}{"port": 587})
		if code := statusOf(logical.PatchOperation, resp, err); code != 404 || err == nil || !strings.Contains(err.Error(), "{type}/{tenant}/{name}") {
			t.Errorf("patch %s: status %d (%v), want 404 explaining the layout", path, code, err)
		}
	}
	// A bad segment under a known type is named even on an unknown sub-path.
	if msg := env.badRequest(logical.UpdateOperation, "smtp/-bad/m1/bogus", nil); !strings.Contains(msg, "invalid tenant") {
		t.Errorf("message %q does not name the tenant", msg)
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Fatalf("stored %v", keys)
	}
}

func TestPeriodic_FailedRotationIsVisibleAndRetried(t *testing.T) {
	env := newTestEnv(t)
	env.dueRotationThatFails("smtp/t1/m1")
	for i := 0; i < 3; i++ {
		env.tick()
		env.clock.Advance(time.Minute)
	}
	got := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)
	if got["version"] != 1 || got["rotation_status"] != rotationOverdue || !strings.Contains(got["last_rotation_error"].(string), "smtp-policy") {
		t.Fatalf("after failed attempts: version %v, status %v, error %q", got["version"], got["rotation_status"], got["last_rotation_error"])
	}
	hist := env.ok(logical.ReadOperation, "smtp/t1/m1/history", nil)["history"].([]interface{})
	if len(hist) != 1 || hist[0].(map[string]interface{})["result"] != "failed" || hist[0].(map[string]interface{})["trigger"] != triggerTime {
		t.Fatalf("three failed attempts left history %v, want one failed row", hist)
	}

	// The policy comes back: the next tick rotates and clears the error.
	env.system.SetPasswordPolicy("smtp-policy", func() (string, error) { return "FromPolicy-0123456789-0123456789", nil })
	env.tick()
	got = env.ok(logical.ReadOperation, "smtp/t1/m1", nil)
	if got["version"] != 2 || got["last_rotation_error"] != "" || got["rotation_status"] != rotationHealthy {
		t.Fatalf("after recovery: version %v, error %q, status %v", got["version"], got["last_rotation_error"], got["rotation_status"])
	}
}

// stallGet holds the first Get of one key, after it has read storage, until
// release is closed.
type stallGet struct {
	logical.Storage
	key     string
	once    sync.Once
	reached chan struct{}
	release chan struct{}
}

func (s *stallGet) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := s.Storage.Get(ctx, key)
	if key == s.key {
		s.once.Do(func() {
			close(s.reached)
			<-s.release
		})
	}
	return e, err
}

func TestPeriodic_ConfigChangeDuringScheduleLoadLosesNothing(t *testing.T) {
	env := newTestEnv(t)
	env.writeAutoRotating("smtp/t1/auto")
	env.writeAutoRotating("smtp/t2/auto")

	// The first tick scans storage; a config write lands while the scan is
	// between t1 (done) and t2.
	stall := &stallGet{Storage: env.storage, key: secretStorageKey("smtp", "t2", "auto"),
		reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: stall})
		done <- err
	}()
	<-stall.reached
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"max_versions": 6})
	close(stall.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	env.clock.Advance(31 * day)
	env.tick()
	for _, p := range []string{"smtp/t1/auto", "smtp/t2/auto"} {
		if v := env.ok(logical.ReadOperation, p, nil)["version"]; v != 2 {
			t.Errorf("%s after its period: version %v, want 2", p, v)
		}
	}
}

func TestPeriodic_WriteDuringScheduleLoadIsScheduled(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/m1", smtpInput()) // auto_rotate off

	// A write turning auto_rotate on races the first tick's scan, which is
	// stalled reading the secret. The scan reads under the secret's lock, so
	// the write waits and reschedules after it; had the scan read outside
	// the lock, the write would finish first and the scan would then record
	// the stale "no work" it read.
	stall := &stallGet{Storage: env.storage, key: secretStorageKey("smtp", "t1", "m1"),
		reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: stall})
		done <- err
	}()
	<-stall.reached
	written := make(chan error, 1)
	go func() {
		_, err := env.do(logical.UpdateOperation, "smtp/t1/m1", map[string]interface{}{"auto_rotate": true})
		written <- err
	}()
	// A bound on a must-not-happen, not synchronisation: an unlocked scan
	// lets the write through in microseconds.
	select {
	case err := <-written:
		t.Fatalf("the write finished while the scan was reading the secret (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(stall.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}

	env.clock.Advance(31 * day)
	env.tick()
	if v := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)["version"]; v != 2 {
		t.Fatalf("auto_rotate set during the schedule scan: version %v after the period, want 2", v)
	}
}

func TestRotateTenant_RepeatedTypeRotatesOnce(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/a", smtpInput())
	id := env.startJob("rotate-tenant/t1", map[string]interface{}{"reason": "breach", "types": "smtp, smtp ,smtp"})
	job := env.runJob(id)
	env.wantJobCounts(job, 1, 1, 0)
	if !reflect.DeepEqual(job["types"], []string{"smtp"}) {
		t.Fatalf("types smtp,smtp: job types %v, want [smtp]", job["types"])
	}
	if v := env.ok(logical.ReadOperation, "smtp/t1/a", nil)["version"]; v != 2 {
		t.Fatalf("types smtp,smtp rotated the secret to version %v, want 2", v)
	}
	if n := env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"type": "smtp,smtp"})["count"]; n != 1 {
		t.Fatalf("rotation/status with type smtp,smtp shows %v rows, want 1", n)
	}
}

func TestSMTP_PasswordWriteClearsLastRotationError(t *testing.T) {
	env := newTestEnv(t)
	env.dueRotationThatFails("smtp/t1/m1")
	env.tick()
	if e := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)["last_rotation_error"]; e == "" {
		t.Fatal("the scheduled rotation did not fail")
	}

	// The operator sets a new password by hand: that is the rotation.
	env.ok(logical.UpdateOperation, "smtp/t1/m1", map[string]interface{}{"password": "a-new-Password-2"})
	got := env.ok(logical.ReadOperation, "smtp/t1/m1", nil)
	if got["rotation_status"] != rotationHealthy || got["last_rotation_error"] != "" {
		t.Fatalf("after a new password: status %v, last_rotation_error %q", got["rotation_status"], got["last_rotation_error"])
	}
}
