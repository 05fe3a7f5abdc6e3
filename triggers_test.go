package penguinmails

import (
	"context"
	"encoding/base64"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// countingStorage counts the writes (Put and Delete) made through it.
type countingStorage struct {
	logical.Storage
	writes atomic.Int64
}

func (s *countingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	s.writes.Add(1)
	return s.Storage.Put(ctx, e)
}

func (s *countingStorage) Delete(ctx context.Context, key string) error {
	s.writes.Add(1)
	return s.Storage.Delete(ctx, key)
}

// okOn runs a request that must succeed against storage s instead of the
// env's own. It makes no existence check: for reads and for paths that
// have none (sign).
func (env *testEnv) okOn(s logical.Storage, op logical.Operation, path string, data map[string]interface{}) map[string]interface{} {
	env.t.Helper()
	resp, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: op, Path: path, Data: data, Storage: s, DisplayName: "token-tester", EntityID: "entity-1234"})
	if err != nil || (resp != nil && resp.IsError()) {
		env.t.Fatalf("%s %s: %v %v", op, path, resp, err)
	}
	return resp.Data
}

// latestHistory is the newest row of a secret's rotation history.
func (env *testEnv) latestHistory(path string) map[string]interface{} {
	env.t.Helper()
	hist := env.ok(logical.ReadOperation, path+"/history", nil)["history"].([]interface{})
	if len(hist) == 0 {
		env.t.Fatalf("%s has no history", path)
	}
	return hist[0].(map[string]interface{})
}

// rotateRows counts the successful rotate rows of a secret's history.
func (env *testEnv) rotateRows(path string) int {
	env.t.Helper()
	n := 0
	for _, h := range env.ok(logical.ReadOperation, path+"/history", nil)["history"].([]interface{}) {
		if row := h.(map[string]interface{}); row["operation"] == "rotate" && row["result"] == "success" {
			n++
		}
	}
	return n
}

func TestTriggers_RotationScheduleDrivesNextRotationAndTheRotation(t *testing.T) {
	env := newTestEnv(t) // 2026-11-01 09:00 UTC
	in := smtpInput()
	in["rotation_schedule"], in["auto_rotate"] = "0 3 * * *", true
	got := env.ok(logical.UpdateOperation, "smtp/t1/cron", in)
	if got["next_rotation"] != "2026-11-02T03:00:00Z" || got["rotation_schedule"] != "0 3 * * *" {
		t.Fatalf("after the write: next_rotation %v, rotation_schedule %v", got["next_rotation"], got["rotation_schedule"])
	}
	env.tick()

	env.clock.Advance(18*time.Hour - time.Minute) // 02:59, one minute early
	env.tick()
	if v := env.ok(logical.ReadOperation, "smtp/t1/cron", nil)["version"]; v != 1 {
		t.Fatalf("rotated before the schedule fired: version %v", v)
	}
	env.clock.Advance(time.Minute) // 03:00
	env.tick()
	got = env.ok(logical.ReadOperation, "smtp/t1/cron", nil)
	if got["version"] != 2 || got["last_rotated"] != "2026-11-02T03:00:00Z" || got["next_rotation"] != "2026-11-03T03:00:00Z" {
		t.Fatalf("after 03:00: version %v, last_rotated %v, next_rotation %v", got["version"], got["last_rotated"], got["next_rotation"])
	}
	if h := env.latestHistory("smtp/t1/cron"); h["trigger"] != triggerTime || h["time"] != "2026-11-02T03:00:00Z" || h["to_version"] != 2 {
		t.Fatalf("history row %v", h)
	}
	// The schedule, not the 30-day SMTP default, sets the pace.
	env.clock.Advance(day)
	env.tick()
	if v := env.ok(logical.ReadOperation, "smtp/t1/cron", nil)["version"]; v != 3 {
		t.Fatalf("a day later: version %v, want 3", v)
	}
	// An empty schedule removes it: back to the period.
	got = env.ok(logical.UpdateOperation, "smtp/t1/cron", map[string]interface{}{"rotation_schedule": ""})
	if got["rotation_schedule"] != "" || got["next_rotation"] != "2026-12-03T03:00:00Z" {
		t.Fatalf("schedule removed: rotation_schedule %q, next_rotation %v", got["rotation_schedule"], got["next_rotation"])
	}
}

func TestTriggers_BadScheduleAndConflictingSettingsAre400(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/a", smtpInput())
	for _, tc := range []struct {
		in      map[string]interface{}
		mention []string
	}{
		{map[string]interface{}{"rotation_schedule": "every night"}, []string{"rotation_schedule", "cron"}},
		{map[string]interface{}{"rotation_schedule": "0 3 * *"}, []string{"rotation_schedule"}},
		{map[string]interface{}{"rotation_schedule": "61 3 * * *"}, []string{"rotation_schedule"}},
		{map[string]interface{}{"rotation_schedule": strings.Repeat("* ", 100)}, []string{"rotation_schedule", "128"}},
		{map[string]interface{}{"rotation_schedule": "0 3 * * *", "rotation_period": "30d"}, []string{"rotation_period", "rotation_schedule"}},
		{map[string]interface{}{"auto_rotate": true, "disable_automated_rotation": true}, []string{"auto_rotate", "disable_automated_rotation"}},
		{map[string]interface{}{"auto_rotate": false, "disable_automated_rotation": false}, []string{"auto_rotate", "disable_automated_rotation"}},
		{map[string]interface{}{"max_uses": -1}, []string{"max_uses"}},
	} {
		before := env.storageSnapshot()
		msg := env.badRequest(logical.UpdateOperation, "smtp/t1/a", tc.in)
		for _, m := range tc.mention {
			if !strings.Contains(msg, m) {
				t.Errorf("%v: message %q does not mention %q", tc.in, msg, m)
			}
		}
		if !mapsEqual(before, env.storageSnapshot()) {
			t.Errorf("%v: the refused write changed storage", tc.in)
		}
		// A create is refused the same way and stores nothing.
		env.badRequest(logical.UpdateOperation, "smtp/t1/new", mergeInput(smtpInput(), tc.in))
		if keys := env.indexKeysOfSecret("smtp", "t1", "new"); len(keys) != 0 {
			t.Errorf("%v: the refused create left index keys %v", tc.in, keys)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func mergeInput(base, extra map[string]interface{}) map[string]interface{} {
	for k, v := range extra {
		base[k] = v
	}
	return base
}

// disable_automated_rotation is Vault's spelling of !auto_rotate: each sets
// the same stored flag, and the worker follows it.
func TestTriggers_DisableAutomatedRotationIsTheOppositeOfAutoRotate(t *testing.T) {
	env := newTestEnv(t)
	env.writeAutoRotating("smtp/t1/a")
	got := env.ok(logical.UpdateOperation, "smtp/t1/a", map[string]interface{}{"disable_automated_rotation": true})
	if got["auto_rotate"] != false || got["disable_automated_rotation"] != true || env.storedEntry("smtp", "t1", "a").AutoRotate {
		t.Fatalf("disable_automated_rotation=true: auto_rotate %v, disable_automated_rotation %v", got["auto_rotate"], got["disable_automated_rotation"])
	}
	env.clock.Advance(31 * day)
	env.tick()
	if v := env.ok(logical.ReadOperation, "smtp/t1/a", nil)["version"]; v != 1 {
		t.Fatalf("rotated with disable_automated_rotation=true: version %v", v)
	}
	got = env.ok(logical.UpdateOperation, "smtp/t1/a", map[string]interface{}{"disable_automated_rotation": false})
	if got["auto_rotate"] != true || got["disable_automated_rotation"] != false {
		t.Fatalf("disable_automated_rotation=false: auto_rotate %v", got["auto_rotate"])
	}
	env.tick()
	if v := env.ok(logical.ReadOperation, "smtp/t1/a", nil)["version"]; v != 2 {
		t.Fatalf("overdue with automated rotation back on: version %v, want 2", v)
	}
	// Both given, agreeing, is accepted.
	got = env.ok(logical.UpdateOperation, "smtp/t1/a", map[string]interface{}{"auto_rotate": false, "disable_automated_rotation": true})
	if got["auto_rotate"] != false {
		t.Fatalf("auto_rotate=false with disable_automated_rotation=true: auto_rotate %v", got["auto_rotate"])
	}
}

func TestTriggers_MaxUsesRotatesOnTheNextPassAfterTheLastUse(t *testing.T) {
	env := newTestEnv(t)
	in := smtpInput()
	in["max_uses"] = 3
	env.ok(logical.UpdateOperation, "smtp/t1/a", in)
	env.tick()

	// Reads are counted in memory: reading never writes storage.
	counting := &countingStorage{Storage: env.storage}
	for i := 0; i < 2; i++ {
		if got := env.okOn(counting, logical.ReadOperation, "smtp/t1/a", nil); got["version"] != 1 {
			t.Fatalf("read %d: version %v", i+1, got["version"])
		}
	}
	if n := counting.writes.Load(); n != 0 {
		t.Fatalf("two reads wrote storage %d times", n)
	}
	// The read that reaches max_uses starts the background work: the
	// secret rotates with no periodic call.
	env.ok(logical.ReadOperation, "smtp/t1/a", nil)
	waitFor(t, "the rotation after the third use", func() bool { // polls storage: no read, no use
		e, err := loadSecret(context.Background(), env.storage, "smtp", "t1", "a")
		return err == nil && e != nil && e.CurrentVersion == 2
	})
	got := env.ok(logical.ReadOperation, "smtp/t1/a", nil)
	if got["version"] != 2 || got["uses"] != 0 || got["max_uses"] != 3 {
		t.Fatalf("after max_uses reads and a tick: version %v, uses %v, max_uses %v", got["version"], got["uses"], got["max_uses"])
	}
	if h := env.latestHistory("smtp/t1/a"); h["trigger"] != triggerThreshold || h["to_version"] != 2 ||
		h["reason"] != "max_uses reached" || h["actor"].(map[string]interface{})["display_name"] != schedulerActor.DisplayName {
		t.Fatalf("history row %v", h)
	}

	// Below the threshold: the count is flushed, nothing rotates. The read
	// above was one use of version 2.
	env.ok(logical.ReadOperation, "smtp/t1/a", nil)
	env.tick()
	if got := env.ok(logical.ReadOperation, "smtp/t1/a", nil); got["version"] != 2 || got["uses"] != 2 {
		t.Fatalf("two uses of version 2, then a tick: version %v, uses %v", got["version"], got["uses"])
	}
	// That read was the third use of version 2: 3 of 3, which starts the
	// background work at once.
	waitFor(t, "uses counted over several passes to reach max_uses", func() bool {
		e, err := loadSecret(context.Background(), env.storage, "smtp", "t1", "a")
		return err == nil && e != nil && e.CurrentVersion == 3
	})
}

func TestTriggers_DKIMSignCountsAsAUse(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"key_type": "ed25519", "max_uses": 2})
	env.tick()
	counting := &countingStorage{Storage: env.storage}
	sign := func() {
		env.okOn(counting, logical.UpdateOperation, dkimPath+"/sign",
			map[string]interface{}{"message": base64.StdEncoding.EncodeToString([]byte(testMessage))})
	}
	sign()
	env.tick()
	if got := env.storedEntry("dkim", "tenant-1", "example.com"); got.CurrentVersion != 1 || got.Uses != 1 {
		t.Fatalf("one sign of two: version %d, uses %d", got.CurrentVersion, got.Uses)
	}
	sign()
	if n := counting.writes.Load(); n != 0 {
		t.Fatalf("two signs wrote storage %d times", n)
	}
	// The second sign reached max_uses and started the background work.
	waitFor(t, "the rotation after the second sign", func() bool {
		return env.storedEntry("dkim", "tenant-1", "example.com").CurrentVersion == 2
	})
	if got := env.storedEntry("dkim", "tenant-1", "example.com"); got.CurrentVersion != 2 || got.Uses != 0 {
		t.Fatalf("two signs of two: version %d, uses %d", got.CurrentVersion, got.Uses)
	}
	if h := env.latestHistory(dkimPath); h["trigger"] != triggerThreshold {
		t.Fatalf("history row %v", h)
	}
}

// Downloads go to the access records, bounded apart: they never push a
// rotation out of the history.
func TestHistory_AccessRecordsNeverPushRotationsOut(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, sshPath, nil)
	env.ok(logical.UpdateOperation, sshPath+"/rotate", map[string]interface{}{"incident_id": "INC-1"})
	for i := 0; i < 60; i++ {
		env.download(sshPath, "")
	}
	logs := env.ok(logical.ReadOperation, sshPath+"/history", nil)
	hist, access := logs["history"].([]interface{}), logs["access"].([]interface{})
	if len(hist) != 1 || hist[0].(map[string]interface{})["incident_id"] != "INC-1" {
		t.Fatalf("history after 60 downloads has %d rows, want the one rotation; newest %v", len(hist), hist[0])
	}
	if len(access) != defaultAccessLimit {
		t.Fatalf("access keeps %d records, want access_limit %d", len(access), defaultAccessLimit)
	}

	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"access_limit": 5, "history_limit": 2})
	env.download(sshPath, "")
	for i := 0; i < 3; i++ {
		env.ok(logical.UpdateOperation, sshPath+"/rotate", nil)
	}
	logs = env.ok(logical.ReadOperation, sshPath+"/history", nil)
	hist, access = logs["history"].([]interface{}), logs["access"].([]interface{})
	if len(access) != 5 || len(hist) != 2 {
		t.Fatalf("with access_limit 5, history_limit 2: %d access records, %d history rows", len(access), len(hist))
	}
	if h := hist[0].(map[string]interface{}); h["operation"] != "rotate" || h["to_version"] != 5 {
		t.Fatalf("newest history row %v", h)
	}
}

func TestConfig_LogLimitsAreBounded(t *testing.T) {
	env := newTestEnv(t)
	for _, field := range []string{"history_limit", "access_limit"} {
		for _, bad := range []int{0, -1, maxLogLimit + 1} {
			msg := env.badRequest(logical.UpdateOperation, "config", map[string]interface{}{field: bad})
			if !strings.Contains(msg, field) || !strings.Contains(msg, "between 1 and 100") {
				t.Errorf("%s=%d: %q", field, bad, msg)
			}
		}
		for _, good := range []int{1, maxLogLimit} {
			env.ok(logical.UpdateOperation, "config", map[string]interface{}{field: good})
			if got := env.ok(logical.ReadOperation, "config", nil)[field]; got != good {
				t.Errorf("%s=%d reads back %v", field, good, got)
			}
		}
	}
	for _, bad := range []int{0, maxJobConcurrency + 1} {
		if msg := env.badRequest(logical.UpdateOperation, "config", map[string]interface{}{"job_concurrency": bad}); !strings.Contains(msg, "job_concurrency") {
			t.Errorf("job_concurrency=%d: %q", bad, msg)
		}
	}
}

// The stored timestamps decide what is due: a second tick at the same time,
// and a new backend over the same storage (a restart, a failover), rotate
// nothing more.
func TestPeriodic_NoDoubleRotation(t *testing.T) {
	env := newTestEnv(t)
	env.writeAutoRotating("smtp/t1/auto")
	env.tick()
	env.clock.Advance(30*day + time.Minute)
	env.tick()
	env.tick()
	if v := env.ok(logical.ReadOperation, "smtp/t1/auto", nil)["version"]; v != 2 || env.rotateRows("smtp/t1/auto") != 1 {
		t.Fatalf("two ticks after the period: version %v, %d rotations", v, env.rotateRows("smtp/t1/auto"))
	}

	before := env.storageSnapshot()["secrets/smtp/t1/auto"]
	restarted := env.restart()
	restarted.tick()
	restarted.tick()
	if after := env.storageSnapshot()["secrets/smtp/t1/auto"]; after != before {
		t.Fatalf("a restarted backend's ticks at the same time changed the secret: %d rotations", env.rotateRows("smtp/t1/auto"))
	}
	if v := restarted.ok(logical.ReadOperation, "smtp/t1/auto", nil)["version"]; v != 2 {
		t.Fatalf("after the restarted backend's ticks: version %v", v)
	}
}
