package penguinmails

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// rotateFake rotates fake/t1/s1 through the engine and returns the new
// current version.
func (env *engEnv) rotateFake(data map[string]interface{}) int {
	env.t.Helper()
	out := env.ok(logical.UpdateOperation, "fake/t1/s1/rotate", data)
	return out["version"].(int)
}

// removalRows is the pending_removals of a read.
func (env *engEnv) removalRows() []interface{} {
	env.t.Helper()
	return env.ok(logical.ReadOperation, "fake/t1/s1", nil)["pending_removals"].([]interface{})
}

// When a previous version's overlap ends, the worker removes it at the
// outside system and records the removal; until then it stays valid.
func TestRemoval_OverlapEndRemovesAtTheOutsideSystem(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)
	env.rotateFake(nil) // v2 current; v1 in its day of overlap
	v3 := env.rotateFake(nil)
	if got := env.out.liveVersions("fake/t1/s1"); !reflect.DeepEqual(got, []int{2, 3}) {
		t.Fatalf("live outside before the overlap ends: %v, want [2 3]", got)
	}
	env.clock.Advance(day + time.Minute)
	env.tick(env.b)
	if got := env.out.liveVersions("fake/t1/s1"); !reflect.DeepEqual(got, []int{v3}) {
		t.Fatalf("live outside after the overlap: %v, want [%d]", got, v3)
	}
	if rows := env.removalRows(); len(rows) != 0 {
		t.Fatalf("pending_removals after the removal: %v", rows)
	}
	var removed []int
	for _, h := range env.entry("fake", "t1", "s1").History {
		if h.Operation == "remove" && h.Result == "success" {
			removed = append(removed, h.FromVersion)
		}
	}
	if !reflect.DeepEqual(removed, []int{1, 2}) {
		t.Fatalf("remove rows in history: %v, want versions [1 2]", removed)
	}
	env.checkSettled(env.b, "t1", "s1")
}

// A removal that fails stays queued, shows in reads and as failing in
// rotation/status, and is retried with backoff until it succeeds.
func TestRemoval_FailureIsRetriedWithBackoffAndShown(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)
	env.rotateFake(nil)
	env.rotateFake(nil) // v2 previous, v3 current
	env.out.failAt("end_overlap", errors.New("provider answered HTTP 503"))
	env.clock.Advance(day + time.Minute)
	env.tick(env.b)

	rows := env.removalRows()
	if len(rows) != 2 {
		t.Fatalf("pending_removals: %v, want versions 1 and 2", rows)
	}
	for i, row := range rows {
		r := row.(map[string]interface{})
		if r["version"] != i+1 || r["attempts"] != 1 || r["reason"] != removeOverlapEnded || !strings.Contains(r["last_error"].(string), "503") {
			t.Fatalf("pending removal %d: %v", i, r)
		}
	}
	failing := statusRows(env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"status": "failing"}))
	if len(failing) != 1 || failing[0]["path"] != "fake/t1/s1" {
		t.Fatalf("rotation/status failing: %v", failing)
	}

	// Not before the backoff: the next tick a second later calls nothing.
	calls := len(env.out.callsOf("end_overlap", "fake/t1/s1"))
	env.clock.Advance(time.Second)
	env.tick(env.b)
	if n := len(env.out.callsOf("end_overlap", "fake/t1/s1")); n != calls {
		t.Fatalf("removal retried before its backoff: %d calls, want %d", n, calls)
	}
	env.out.failAt("end_overlap", nil)
	env.clock.Advance(retryBase)
	env.tick(env.b)
	if rows := env.removalRows(); len(rows) != 0 {
		t.Fatalf("pending_removals after the retry succeeded: %v", rows)
	}
	if got := env.out.liveVersions("fake/t1/s1"); !reflect.DeepEqual(got, []int{3}) {
		t.Fatalf("live outside: %v, want [3]", got)
	}
	env.checkSettled(env.b, "t1", "s1")
	failing = statusRows(env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"status": "failing"}))
	if len(failing) != 0 {
		t.Fatalf("still failing after the removal: %v", failing)
	}
}

// An incident rotation with revoke_previous removes every previously valid
// credential at the outside system within the same request.
func TestRemoval_RevokePreviousRemovesAtOnce(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)
	env.rotateFake(nil) // v2 current, v1 previous
	v3 := env.rotateFake(map[string]interface{}{"revoke_previous": true, "incident_id": "INC-1"})
	if got := env.out.liveVersions("fake/t1/s1"); !reflect.DeepEqual(got, []int{v3}) {
		t.Fatalf("live outside right after the incident rotation: %v, want [%d]", got, v3)
	}
	if rows := env.removalRows(); len(rows) != 0 {
		t.Fatalf("pending_removals: %v", rows)
	}
	env.checkSettled(env.b, "t1", "s1")
}

// max_versions may drop a version still in its overlap; it is then queued
// and removed outside, not forgotten.
func TestRemoval_TrimmedLiveVersionIsRemoved(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", map[string]interface{}{"max_versions": 1})
	v2 := env.rotateFake(nil) // v1 dropped at once by max_versions=1
	env.rotateFake(nil)       // v2 dropped while in its overlap
	found := false
	for _, h := range env.entry("fake", "t1", "s1").History {
		found = found || (h.Operation == "remove" && h.FromVersion == v2 && h.Result == "success")
	}
	if !found {
		t.Fatalf("version %d, dropped during its overlap, was not removed outside: %+v", v2, env.entry("fake", "t1", "s1").History)
	}
	if got := env.out.liveVersions("fake/t1/s1"); len(got) != 1 {
		t.Fatalf("live outside: %v, want only the current version", got)
	}
}

// Deleting a secret that still owes a removal warns which versions may be
// valid at the provider.
func TestRemoval_DeleteWarnsOfOwedRemovals(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)
	env.out.failAt("end_overlap", errors.New("provider down"))
	env.rotateFake(map[string]interface{}{"revoke_previous": true})
	resp, err := env.do(env.b, logical.DeleteOperation, "fake/t1/s1", nil)
	if err != nil || resp == nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "versions [1]") {
		t.Fatalf("delete: %v %+v", err, resp)
	}
}

// Deleting a secret during an overlap also warns: the previous credential
// is still valid at the provider and, with the secret gone, no overlap end
// will ever remove it.
func TestRemoval_DeleteDuringOverlapWarns(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)
	env.rotateFake(nil) // version 1 stays valid for the overlap
	resp, err := env.do(env.b, logical.DeleteOperation, "fake/t1/s1", nil)
	if err != nil || resp == nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "versions [1]") {
		t.Fatalf("delete during the overlap: %v %+v, want a warning naming version 1", err, resp)
	}
}
