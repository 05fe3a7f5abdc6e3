package penguinmails

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

var smtpFields = map[string]interface{}{"username": "u@example.com", "host": "smtp.example.com"}

// writeTenants stores one SMTP and one fake secret for each of n tenants.
func (env *engEnv) writeTenants(n int) {
	env.t.Helper()
	for i := 0; i < n; i++ {
		tenant := fmt.Sprintf("t%02d", i)
		env.ok(logical.CreateOperation, "smtp/"+tenant+"/mail", smtpFields)
		env.writeFake(tenant, "api", nil)
	}
}

// startJob starts a job and returns its id.
func (env *engEnv) startJob(path string, data map[string]interface{}) string {
	env.t.Helper()
	id, _ := env.ok(logical.UpdateOperation, path, data)["job_id"].(string)
	if id == "" {
		env.t.Fatalf("%s answered no job_id", path)
	}
	return id
}

// waitJob polls the job until it has finished and returns its view.
func (env *engEnv) waitJob(id string) map[string]interface{} {
	env.t.Helper()
	var view map[string]interface{}
	waitFor(env.t, "job "+id+" to finish", func() bool {
		view = env.ok(logical.ReadOperation, "rotate/jobs/"+id, nil)
		return view["state"] == jobSucceeded || view["state"] == jobFailed
	})
	return view
}

// checkJobCounts compares a job's counters.
func checkJobCounts(t *testing.T, view map[string]interface{}, want map[string]int) {
	t.Helper()
	for k, n := range want {
		if view[k] != n {
			t.Errorf("job %s = %v, want %d (job %v)", k, view[k], n, view)
		}
	}
}

// checkVersions asserts that every secret of the tenants is at version want.
func (env *engEnv) checkVersions(tenants int, want int) {
	env.t.Helper()
	for i := 0; i < tenants; i++ {
		tenant := fmt.Sprintf("t%02d", i)
		for _, kn := range [][2]string{{"smtp", "mail"}, {"fake", "api"}} {
			if e := env.entry(kn[0], tenant, kn[1]); e.CurrentVersion != want {
				env.t.Errorf("%s/%s/%s: version %d, want %d", kn[0], tenant, kn[1], e.CurrentVersion, want)
			}
		}
	}
}

// A bulk job over 30 tenants with two secrets each rotates all 60 once,
// job_concurrency at a time, and records the job in each history row
// (flagged no_incident without an incident_id); LIST rotate/jobs shows it.
func TestJobs_BulkRotatesEverySecretOnce(t *testing.T) {
	env := newEngEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"job_concurrency": 4})
	env.writeTenants(30)

	id := env.startJob("rotate/bulk", map[string]interface{}{"reason": "drill"})
	view := env.waitJob(id)
	checkJobCounts(t, view, map[string]int{"total": 60, "done": 60, "rotated": 60, "skipped": 0, "failed": 0})
	if view["state"] != jobSucceeded {
		t.Fatalf("job state %v", view["state"])
	}
	env.checkVersions(30, 2)
	if env.out.maxInflight > 4 {
		t.Fatalf("%d calls into the outside system at once with job_concurrency 4", env.out.maxInflight)
	}
	for _, p := range []string{"smtp/t07/mail", "fake/t29/api"} {
		rows := historyRows(t, env.ok(logical.ReadOperation, p+"/history", nil))
		if len(rows) == 0 || rows[0]["job_id"] != id || rows[0]["no_incident"] != true || rows[0]["result"] != "success" {
			t.Fatalf("%s newest history row: %v", p, rows)
		}
	}

	resp, err := env.do(env.b, logical.ListOperation, "rotate/jobs", nil)
	if err != nil || resp == nil {
		t.Fatalf("list jobs: %v", err)
	}
	info, _ := resp.Data["key_info"].(map[string]interface{})[id].(map[string]interface{})
	if info == nil || info["state"] != jobSucceeded || info["total"] != 60 || info["done"] != 60 {
		t.Fatalf("rotate/jobs key_info for %s: %v", id, resp.Data)
	}
}

// startInterruptedJob starts a bulk job whose progress can be saved only
// saves times (creation and plan included), then stops the backend as if its
// process had died there, and returns the job id.
func (env *engEnv) startInterruptedJob(saves int, data map[string]interface{}) string {
	env.t.Helper()
	var mu sync.Mutex
	n, refused := 0, false
	env.s.setFailPut(func(key string) error {
		if !strings.HasPrefix(key, jobsPrefix) {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if n++; n > saves {
			refused = true
			return errors.New("storage unavailable")
		}
		return nil
	})
	id := env.startJob("rotate/bulk", data)
	waitFor(env.t, "the job's progress to be refused", func() bool { mu.Lock(); defer mu.Unlock(); return refused })
	env.b.clean(context.Background())
	env.s.setFailPut(nil)
	return id
}

// A job interrupted mid-chunk (its progress cannot be saved, as when the
// process dies after rotating a group) resumes on a fresh backend: it
// finishes, rotates nothing twice, and counts every secret once.
func TestJobs_ResumeRotatesNothingTwice(t *testing.T) {
	env := newEngEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"job_concurrency": 4})
	env.writeTenants(30)

	// Job saves: created, planned, then one per group of 4. The third
	// group rotates, and its progress is lost.
	id := env.startInterruptedJob(4, map[string]interface{}{"incident_id": "INC-1"})
	stored, err := loadJob(context.Background(), env.inner, id)
	if err != nil || stored == nil || stored.Done != 8 {
		t.Fatalf("stored progress before the resume: %+v %v; want 8 done", stored, err)
	}

	env.b = env.fresh()
	env.tick(env.b)
	view := env.waitJob(id)
	checkJobCounts(t, view, map[string]int{"total": 60, "done": 60, "rotated": 60, "skipped": 0, "failed": 0})
	env.checkVersions(30, 2)
	for i := 0; i < 30; i++ {
		p := fmt.Sprintf("fake/t%02d/api", i)
		if n := len(env.out.callsOf(stepSet, p)); n != 1 {
			t.Errorf("%s was set outside %d times", p, n)
		}
	}
}

// status=overdue rotates only the overdue secrets and skips the others.
func TestJobs_OverdueFilter(t *testing.T) {
	env := newEngEnv(t)
	for _, n := range []string{"a", "b", "c"} {
		env.ok(logical.CreateOperation, "smtp/t1/"+n, smtpFields)
	}
	env.clock.Advance(31 * day)
	for _, n := range []string{"d", "e"} {
		env.ok(logical.CreateOperation, "smtp/t1/"+n, smtpFields)
	}
	view := env.waitJob(env.startJob("rotate/bulk", map[string]interface{}{"status": "overdue", "types": "smtp"}))
	checkJobCounts(t, view, map[string]int{"total": 5, "rotated": 3, "skipped": 2, "failed": 0})
	for n, want := range map[string]int{"a": 2, "b": 2, "c": 2, "d": 1, "e": 1} {
		if e := env.entry("smtp", "t1", n); e.CurrentVersion != want {
			t.Errorf("smtp/t1/%s: version %d, want %d", n, e.CurrentVersion, want)
		}
	}
}

// Bad job input is a 400 that names the field, and starts no job.
func TestJobs_BadInputNamesTheField(t *testing.T) {
	env := newEngEnv(t)
	for _, c := range []struct {
		path  string
		data  map[string]interface{}
		field string
	}{
		{"rotate/bulk", map[string]interface{}{"status": "stale"}, "status"},
		{"rotate/bulk", map[string]interface{}{"types": "smtp,email"}, "types"},
		{"rotate/bulk", map[string]interface{}{"tenant": "a..b"}, "tenant"},
		{"rotate-tenant/a..b", nil, "tenant"},
		{"rotate-tenant/t1", map[string]interface{}{"types": "nope"}, "types"},
		{"rotate/bulk", map[string]interface{}{"incident_id": strings.Repeat("x", 200)}, "incident_id"},
	} {
		code, msg := env.status(logical.UpdateOperation, c.path, c.data)
		if code != 400 || !strings.Contains(msg, c.field) {
			t.Errorf("%s %v: %d %q, want a 400 naming %s", c.path, c.data, code, msg, c.field)
		}
	}
	if keys, _ := env.inner.List(context.Background(), jobsPrefix); len(keys) != 0 {
		t.Fatalf("bad input started jobs: %v", keys)
	}
}

// A job that meets a secret whose earlier rotation was interrupted (a crash
// after set) does not fail it: it keeps it aside, and once Vault's rollback
// has settled the interrupted rotation, the job rotates it too.
func TestJobs_InterruptedRotationIsRetriedAfterTheRollback(t *testing.T) {
	env := newEngEnv(t)
	for _, tenant := range []string{"t0", "t1", "t2"} {
		env.writeFake(tenant, "api", nil)
	}
	env.b.testCrashAfter = func(step string) error {
		if step == stepSet {
			return errCrash
		}
		return nil
	}
	if _, err := env.do(env.b, logical.UpdateOperation, "fake/t0/api/rotate", nil); err == nil {
		t.Fatal("the crashed rotation answered no error")
	}
	env.b.testCrashAfter = nil

	id := env.startJob("rotate/bulk", map[string]interface{}{"types": "fake", "incident_id": "INC-7"})
	var view map[string]interface{}
	waitFor(t, "the job to keep the interrupted secret aside", func() bool {
		env.tick(env.b)
		view = env.ok(logical.ReadOperation, "rotate/jobs/"+id, nil)
		return view["deferred"] == 1 && view["done"] == 2
	})
	if view["state"] != jobRunning || view["failed"] != 0 {
		t.Fatalf("job with a deferred secret: %v", view)
	}
	env.tick(env.b) // before retry_after: still waiting, nothing failed
	if view = env.ok(logical.ReadOperation, "rotate/jobs/"+id, nil); view["failed"] != 0 || view["deferred"] != 1 {
		t.Fatalf("the job retried before the rollback's turn: %v", view)
	}

	if err := env.rollback(env.b); err != nil { // finishes the interrupted rotation: version 2
		t.Fatal(err)
	}
	env.clock.Advance(walRollbackMinAge + 2*time.Minute)
	env.tick(env.b)
	view = env.waitJob(id)
	checkJobCounts(t, view, map[string]int{"total": 3, "done": 3, "rotated": 3, "failed": 0})
	if e := env.entry("fake", "t0", "api"); e.CurrentVersion != 3 || e.LastJob != id || e.pending() != nil {
		t.Fatalf("fake/t0/api: version %d, last_job %q, pending %v; want 3 (rollback, then the job), the job, none",
			e.CurrentVersion, e.LastJob, e.pending())
	}
}

// After a restart (a failover, an unseal) an unfinished job resumes as soon
// as the mount is initialized, without waiting for the first periodic call.
func TestJobs_ResumeAtInitializeWithoutATick(t *testing.T) {
	env := newEngEnv(t)
	env.writeTenants(10)
	id := env.startInterruptedJob(3, map[string]interface{}{"incident_id": "INC-2"})

	env.b = env.fresh()
	if err := env.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: env.s}); err != nil {
		t.Fatal(err)
	}
	view := env.waitJob(id) // reads only: no periodic call is made
	checkJobCounts(t, view, map[string]int{"total": 20, "rotated": 20, "failed": 0})
}

// Without a queued job, initializing starts no background work: scheduled
// rotation keeps Vault's once-a-minute pace after a failover.
func TestJobs_InitializeWithoutAJobStartsNothing(t *testing.T) {
	env := newEngEnv(t)
	env.writeTenants(1)
	env.clock.Advance(31 * day)
	if err := env.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: env.s}); err != nil {
		t.Fatal(err)
	}
	env.b.worker.mu.Lock()
	running := env.b.worker.cancel != nil
	env.b.worker.mu.Unlock()
	if running {
		t.Fatal("initialize started the worker with no job queued")
	}
}

// A job started by Initialize does not rotate due secrets before Vault's
// first periodic call: scheduled work keeps Vault's pace after a failover.
func TestJobs_InitializeWorkerLeavesScheduledWorkToPeriodic(t *testing.T) {
	env := newEngEnv(t)
	in := map[string]interface{}{"auto_rotate": true}
	for k, v := range smtpFields {
		in[k] = v
	}
	env.ok(logical.CreateOperation, "smtp/due/m1", in)
	env.tick(env.b)
	env.writeTenants(2)
	id := env.startInterruptedJob(2, map[string]interface{}{"types": "fake"})
	env.clock.Advance(31 * day) // smtp/due/m1 is due

	env.b = env.fresh()
	if err := env.b.Initialize(context.Background(), &logical.InitializationRequest{Storage: env.s}); err != nil {
		t.Fatal(err)
	}
	env.waitJob(id)
	if v := env.entry("smtp", "due", "m1").CurrentVersion; v != 1 {
		t.Fatalf("the due secret rotated (version %d) before any periodic call", v)
	}
	// The worker may still be finishing its pass, which makes a periodic
	// call skip its own: call again until one has run.
	waitFor(t, "the due secret to rotate after periodic calls", func() bool {
		env.tick(env.b)
		return env.entry("smtp", "due", "m1").CurrentVersion == 2
	})
}
