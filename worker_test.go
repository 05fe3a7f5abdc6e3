package penguinmails

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// tick runs b's periodic function as Vault's rollback manager does (WAL
// entries are younger than walRollbackMinAge, so none is rolled back).
func (env *engEnv) tick(b *backend) {
	env.t.Helper()
	req := &logical.Request{Operation: logical.RollbackOperation, Storage: env.s}
	if _, err := b.HandleRequest(context.Background(), req); err != nil {
		env.t.Fatalf("periodic: %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An automatic rotation that always fails is retried with backoff: over a
// day of ticks every minute the secret is written a handful of times, not
// 1,440; the retry delay doubles from a minute up to the six-hour cap; the
// run of failures is one history row; a later success clears it.
func TestWorker_FailingAutoRotationBacksOff(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", map[string]interface{}{"auto_rotate": true})
	env.tick(env.b) // the mount's first pass builds its index
	env.out.failAt(stepCreate, errors.New("provider down"))
	env.clock.Advance(30 * day)
	env.s.resetCounts()

	var delays []time.Duration
	failures := 0
	for minute := 0; minute <= 24*60; minute++ {
		env.tick(env.b)
		e := env.entry("fake", "t1", "s1")
		if e.RotationFailures != failures {
			if e.RotationFailures != failures+1 {
				t.Fatalf("minute %d: failures went from %d to %d", minute, failures, e.RotationFailures)
			}
			failures = e.RotationFailures
			delays = append(delays, e.NextAttempt.Sub(e.LastRotationErrorTime))
		}
		env.clock.Advance(time.Minute)
	}

	want := time.Minute
	for i, d := range delays {
		if d != want {
			t.Fatalf("delay after failure %d is %s, want %s (all: %v)", i+1, d, want, delays)
		}
		want = min(2*want, retryCap)
	}
	if delays[len(delays)-1] != retryCap {
		t.Fatalf("the delay never reached the %s cap: %v", retryCap, delays)
	}
	if creates := len(env.out.callsOf(stepCreate, "fake/t1/s1")); creates != failures {
		t.Fatalf("%d attempts for %d recorded failures", creates, failures)
	}
	// Each attempt writes the entry at most twice (upkeep, failure).
	if puts := env.s.putsUnder("secrets/fake/t1/s1"); puts > 2*failures || failures > 16 {
		t.Fatalf("%d writes of the secret for %d failed attempts in a day", puts, failures)
	}
	rows := historyRows(t, env.ok(logical.ReadOperation, "fake/t1/s1/history", nil))
	failed := 0
	for _, r := range rows {
		if r["result"] == "failed" {
			failed++
		}
	}
	if failed != 1 {
		t.Fatalf("%d failed history rows for one run of failures: %v", failed, rows)
	}

	env.out.failAt(stepCreate, nil)
	env.clock.Advance(env.entry("fake", "t1", "s1").NextAttempt.Sub(env.clock.Now()))
	env.tick(env.b)
	e := env.checkSettled(env.b, "t1", "s1")
	if e.CurrentVersion != 2 || e.RotationFailures != 0 || !e.NextAttempt.IsZero() || e.LastRotationError != "" {
		t.Fatalf("after a successful retry: version %d, failures %d, next attempt %s, error %q",
			e.CurrentVersion, e.RotationFailures, e.NextAttempt, e.LastRotationError)
	}
}

// An entry that cannot be decoded does not stop the tick: the other due
// secrets rotate, and the entry is recorded and reported by rotation/status.
func TestWorker_UnreadableEntryIsSkippedAndReported(t *testing.T) {
	env := newEngEnv(t)
	smtp := map[string]interface{}{"username": "u@example.com", "host": "smtp.example.com", "auto_rotate": true}
	env.ok(logical.CreateOperation, "smtp/t1/a", smtp)
	env.ok(logical.CreateOperation, "smtp/t2/c", smtp)
	env.tick(env.b)
	env.clock.Advance(31 * day)

	ctx := context.Background()
	now := env.clock.Now()
	for _, e := range []*logical.StorageEntry{
		{Key: secretStorageKey("smtp", "t1", "bad"), Value: []byte("\x00not json")},
		{Key: indexWorkPrefix + hourBucket(now) + "/" + itemName(now.Add(-time.Minute), "smtp", "t1", "bad")},
	} {
		if err := env.inner.Put(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	env.tick(env.b)

	for _, p := range [][2]string{{"t1", "a"}, {"t2", "c"}} {
		if e := env.entry("smtp", p[0], p[1]); e.CurrentVersion != 2 {
			t.Errorf("smtp/%s/%s: version %d after the tick, want 2", p[0], p[1], e.CurrentVersion)
		}
	}
	if raw, _ := env.inner.Get(ctx, indexUnreadablePrefix+"smtp:t1:bad"); raw == nil {
		t.Fatal("the unreadable entry was not recorded under index/unreadable")
	}
	status := env.ok(logical.ReadOperation, "rotation/status", nil)
	index := status["index"].(map[string]interface{})
	if got := index["unreadable"].([]string); len(got) != 1 || got[0] != "smtp/t1/bad" {
		t.Fatalf("index.unreadable: %v", got)
	}
}

// A type hook that panics during a scheduled rotation is recovered: the
// tick goes on and rotates the other due secrets, the panic is logged
// without its value, and the secret's lock is released.
func TestWorker_PanickingHookDoesNotStopTheTick(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "p", map[string]interface{}{"auto_rotate": true})
	env.ok(logical.CreateOperation, "smtp/t1/a", map[string]interface{}{"username": "u@example.com", "host": "smtp.example.com", "auto_rotate": true})
	env.tick(env.b)
	env.out.panicAt(stepCreate, true)
	env.clock.Advance(31 * day)

	env.tick(env.b)
	if e := env.entry("smtp", "t1", "a"); e.CurrentVersion != 2 {
		t.Fatalf("smtp/t1/a: version %d after the tick, want 2", e.CurrentVersion)
	}
	if e := env.entry("fake", "t1", "p"); e.CurrentVersion != 1 || e.pending() != nil {
		t.Fatalf("fake/t1/p: version %d, pending %v", e.CurrentVersion, e.pending())
	}
	logs := env.logs.String()
	if !strings.Contains(logs, "recovered from a panic") || strings.Contains(logs, "fake outside system panicked") {
		t.Fatalf("logs do not show a recovered panic without its value:\n%s", logs)
	}

	env.out.panicAt(stepCreate, false)
	env.ok(logical.UpdateOperation, "fake/t1/p/rotate", nil) // the lock was released
	env.checkSettled(env.b, "t1", "p")
}

// Clean stops the worker promptly even while a job waits on a hook that
// hangs, and the worker goroutine is gone afterwards. The interrupted
// rotation is not recorded as a failure of the outside system; Vault's
// rollback settles it.
func TestWorker_CleanStopsTheWorkerPromptly(t *testing.T) {
	env := newEngEnv(t)
	env.writeFake("t1", "s1", nil)
	env.out.hangAt(stepSet, true)
	env.ok(logical.UpdateOperation, "rotate/bulk", map[string]interface{}{"types": "fake"})
	waitFor(t, "the job to reach the hanging set", func() bool { return len(env.out.callsOf(stepSet, "fake/t1/s1")) > 0 })

	env.b.worker.mu.Lock()
	done := env.b.worker.done
	env.b.worker.mu.Unlock()
	start := time.Now()
	env.b.clean(context.Background())
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("clean took %s", took)
	}
	select {
	case <-done:
	default:
		t.Fatal("the worker goroutine is still running after clean")
	}

	e := env.entry("fake", "t1", "s1")
	// Undoing now could race the set call the outside system may still act
	// on: the rotation is left, pending under its WAL, to the rollback.
	if calls := env.out.steps("fake/t1/s1"); strings.Join(calls, " ") != "create:0 set:2" || e.pending() == nil || len(env.wals()) != 1 {
		t.Fatalf("after clean: calls %v, stages %v, WALs %v; want the pending version left to the rollback", calls, stages(env.b, e), env.wals())
	}
	if e.RotationFailures != 0 {
		t.Fatalf("a shutdown was recorded as a rotation failure: %q at %s", e.LastRotationError, e.LastRotationErrorStep)
	}
	env.out.hangAt(stepSet, false)
	if err := env.rollback(env.fresh()); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	env.checkSettled(env.b, "t1", "s1")
}

// A secret whose work fails does not hold the sweep cursor (every later
// tick would list every hour since): it is looked at again ten minutes
// later, until its work succeeds.
func TestWorker_FailingSecretIsRetriedWithoutHoldingTheCursor(t *testing.T) {
	env := newEngEnv(t)
	in := map[string]interface{}{"auto_rotate": true}
	for k, v := range smtpFields {
		in[k] = v
	}
	env.ok(logical.CreateOperation, "smtp/t1/bad", in)
	env.tick(env.b) // creates the index and its cursor
	refuse := func(on bool) {
		env.s.setFailPut(func(key string) error {
			if !on {
				return nil
			}
			if key == secretStorageKey("smtp", "t1", "bad") {
				return errors.New("storage refuses this entry")
			}
			// Also refuse the index keys the failed write would leave due
			// now, so that only the sweep's retry can bring it back.
			if it, ok := parseItem(key[strings.LastIndex(key, "/")+1:]); ok && strings.HasPrefix(key, indexWorkPrefix) &&
				it.name == "bad" && !it.at.After(env.clock.Now()) {
				return errors.New("storage refuses this key")
			}
			return nil
		})
	}
	refuse(true)
	env.clock.Advance(31 * day) // due: its work fails
	env.tick(env.b)
	raw, err := env.inner.Get(context.Background(), indexSweepPath)
	if err != nil || raw == nil || string(raw.Value) < hourBucket(env.clock.Now().Add(-2*time.Hour)) {
		t.Fatalf("sweep cursor %v (%v): held back by the failing secret", raw, err)
	}
	if v := env.entry("smtp", "t1", "bad").CurrentVersion; v != 1 {
		t.Fatalf("version %d while storage refuses the entry", v)
	}
	refuse(false)
	env.clock.Advance(retryFailedWork)
	env.tick(env.b)
	if v := env.entry("smtp", "t1", "bad").CurrentVersion; v != 2 {
		t.Fatalf("version %d after storage recovered: the failed secret was not retried", v)
	}
}
