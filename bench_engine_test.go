package penguinmails

import (
	"context"
	"fmt"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"
)

// Benchmarks of the rotation engine's background work on a mount with many
// secrets, in process (InmemStorage, whose List walks every key under a
// prefix as Raft's does). Storage is filled by storing entries directly:
// going through the request path for a million secrets would take minutes
// and measure nothing these benchmarks are about.
//
// make bench runs them with fixed iteration counts (see the Makefile).

// benchMount is a mounted backend with a fixed clock and a template SMTP
// entry, made by a real create request, that fill copies.
type benchMount struct {
	env *testEnv
	ctx context.Context
	s   logical.Storage
	tpl secretEntry
	cfg *engineConfig
	now time.Time
}

func newBenchMount(b testing.TB) *benchMount {
	b.Helper()
	t, _ := b.(*testing.T)
	if t == nil {
		t = &testing.T{} // a benchmark: every check below reports through b
	}
	env := newTestEnv(t)
	// Trace logging of a million writes would only fill the capture buffer.
	env.b.Logger().SetLevel(hclog.Warn)
	// As Vault's first periodic call would: the passes below sweep due work.
	env.b.periodicStarted.Store(true)
	m := &benchMount{env: env, ctx: context.Background(), s: env.storage, now: env.clock.Now().UTC()}
	in := smtpInput()
	in["auto_rotate"] = true
	if resp, err := env.do(logical.UpdateOperation, "smtp/template/mail", in); err != nil || resp.IsError() {
		b.Fatalf("template write: %v %v", err, resp)
	}
	tpl, err := loadSecret(m.ctx, m.s, "smtp", "template", "mail")
	if err != nil || tpl == nil {
		b.Fatalf("template read: %v", err)
	}
	if err := env.b.unstore(m.ctx, m.s, secretRef{kind: env.b.kinds["smtp"], tenant: "template", name: "mail"}, tpl); err != nil {
		b.Fatal(err)
	}
	m.tpl = *tpl
	if m.cfg, err = env.b.config(m.ctx, m.s); err != nil {
		b.Fatal(err)
	}
	// The first pass creates the index (index/meta) on the empty mount, so
	// that no later pass starts a rebuild of what fill stores.
	m.drain(b)
	return m
}

// benchName names secret i: four per tenant, as a tenant's mailboxes.
func benchName(i int) (tenant, name string) {
	return fmt.Sprintf("t%07d", i/4), fmt.Sprintf("m%d", i%4)
}

// entry is the template as secret i, rotated at lastRotated.
func (m *benchMount) entry(i int, lastRotated time.Time) *secretEntry {
	e := m.tpl
	e.Tenant, e.Name = benchName(i)
	e.LastRotated = lastRotated
	e.Indexed = indexKeys{}
	return &e
}

// overdue is a last_rotated past the SMTP rotation period (30 days).
func (m *benchMount) overdue() time.Time { return m.now.Add(-31 * day) }

// fill stores n secrets with their index keys; every (n/due)-th one is
// overdue, the others were rotated now. It returns the overdue ones.
func (m *benchMount) fill(b testing.TB, n, due int) []int {
	b.Helper()
	kind := m.env.b.kinds["smtp"]
	var dueIdx []int
	for i := 0; i < n; i++ {
		at := m.now
		if due > 0 && i%(n/due) == 0 && len(dueIdx) < due {
			at = m.overdue()
			dueIdx = append(dueIdx, i)
		}
		if err := m.env.b.store(m.ctx, m.s, m.entry(i, at), kind, m.cfg, m.now); err != nil {
			b.Fatal(err)
		}
	}
	return dueIdx
}

// makeDue puts secret i back as fill stored it, overdue, so that every
// tick rotates entries of the same size. Its index keys are kept, so that
// store replaces them as it would in any change.
func (m *benchMount) makeDue(b testing.TB, i int) {
	b.Helper()
	kind := m.env.b.kinds["smtp"]
	tenant, name := benchName(i)
	cur, err := loadSecret(m.ctx, m.s, "smtp", tenant, name)
	if err != nil || cur == nil {
		b.Fatalf("load %s/%s: %v", tenant, name, err)
	}
	e := m.entry(i, m.overdue())
	e.Indexed = cur.Indexed
	if err := m.env.b.store(m.ctx, m.s, e, kind, m.cfg, m.now); err != nil {
		b.Fatal(err)
	}
}

// drain runs background passes until none reports work left, as the
// worker goroutine does.
func (m *benchMount) drain(b testing.TB) int {
	b.Helper()
	passes := 0
	for more := true; more; passes++ {
		var err error
		if more, err = m.env.b.workPass(m.ctx, m.s); err != nil {
			b.Fatal(err)
		}
	}
	return passes
}

// BenchmarkSchedulerTick measures one background pass (what Vault's
// periodic call runs) that rotates the 100 overdue secrets among stored
// ones. The due index makes its cost follow what is due, not what is
// stored: the goal is a million-secret tick at most twice a 1,000-secret
// one.
func BenchmarkSchedulerTick(b *testing.B) {
	for _, stored := range []int{1000, 1000000} {
		var m *benchMount
		var dueIdx []int
		rounds := 0 // ticks so far, over every call
		b.Run(fmt.Sprintf("stored=%d", stored), func(b *testing.B) {
			if m == nil { // the framework calls this more than once
				m = newBenchMount(b)
				dueIdx = m.fill(b, stored, 100)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for n := 0; n < b.N; n++ {
				if rounds > 0 {
					b.StopTimer()
					for _, i := range dueIdx {
						m.makeDue(b, i)
					}
					b.StartTimer()
				}
				if more, err := m.env.b.workPass(m.ctx, m.s); err != nil || more {
					b.Fatalf("pass: more=%t err=%v", more, err)
				}
				rounds++
			}
			b.StopTimer()
			m.checkRotated(b, dueIdx, m.tpl.CurrentVersion+1)
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(dueIdx)), "ns/due-secret")
		})
	}
}

// checkRotated fails unless every secret of idx is at version want and no
// longer overdue.
func (m *benchMount) checkRotated(b testing.TB, idx []int, want int) {
	b.Helper()
	pol := m.env.b.kinds["smtp"].policy(m.cfg, "")
	for _, i := range idx {
		tenant, name := benchName(i)
		e, err := loadSecret(m.ctx, m.s, "smtp", tenant, name)
		if err != nil || e == nil {
			b.Fatalf("load %s/%s: %v", tenant, name, err)
		}
		if e.CurrentVersion != want || e.rotationStatus(pol, m.now) != rotationHealthy {
			b.Fatalf("%s/%s: version %d status %s, want version %d, healthy", tenant, name, e.CurrentVersion, e.rotationStatus(pol, m.now), want)
		}
	}
}

// BenchmarkIndexRebuild measures the resumable index rebuild over 100,000
// secrets (25,000 tenants of 4), in budgeted batches as the worker runs it:
// "fresh" indexes entries that have no index keys (a mount written before
// the index existed), "in-step" re-checks a mount whose index is right.
func BenchmarkIndexRebuild(b *testing.B) {
	const stored = 100000
	var m *benchMount
	var raw []*logical.StorageEntry
	setup := func(b *testing.B) {
		if m != nil {
			return
		}
		m = newBenchMount(b)
		for i := 0; i < stored; i++ {
			entry, err := logical.StorageEntryJSON(m.entry(i, m.now).storageKey(), m.entry(i, m.now))
			if err != nil {
				b.Fatal(err)
			}
			raw = append(raw, entry)
		}
	}
	putRaw := func(b *testing.B) {
		for _, entry := range raw {
			if err := m.s.Put(m.ctx, entry); err != nil {
				b.Fatal(err)
			}
		}
	}
	rebuild := func(b *testing.B) {
		if err := m.env.b.startIndexRebuild(m.ctx, m.s, "bench"); err != nil {
			b.Fatal(err)
		}
		for more := true; more; {
			var err error
			if more, err = m.env.b.rebuildBatch(m.ctx, m.s, rebuildBudget); err != nil {
				b.Fatal(err)
			}
		}
	}
	report := func(b *testing.B) {
		st, err := loadRebuild(m.ctx, m.s)
		if err != nil || st == nil || st.Done != stored || st.Finished.IsZero() {
			b.Fatalf("rebuild state %+v (%v), want %d done and finished", st, err, stored)
		}
		perSecret := float64(b.Elapsed().Nanoseconds()) / float64(b.N*stored)
		b.ReportMetric(perSecret, "ns/secret")
		b.ReportMetric(perSecret*100000/1e9, "s/100k-secrets")
	}
	b.Run("fresh", func(b *testing.B) {
		setup(b)
		b.ReportAllocs()
		b.ResetTimer()
		for n := 0; n < b.N; n++ {
			b.StopTimer()
			putRaw(b) // index keys dropped from the entries: all written again
			b.StartTimer()
			rebuild(b)
		}
		b.StopTimer()
		report(b)
		m.checkIndexed(b, stored)
	})
	b.Run("in-step", func(b *testing.B) {
		setup(b)
		b.StopTimer()
		putRaw(b)
		rebuild(b)
		b.ReportAllocs()
		b.ResetTimer()
		b.StartTimer()
		for n := 0; n < b.N; n++ {
			rebuild(b)
		}
		b.StopTimer()
		report(b)
	})
}

// checkIndexed fails unless the due index of day now+30d lists every one of
// the n secrets rotated now.
func (m *benchMount) checkIndexed(b *testing.B, n int) {
	b.Helper()
	keys, err := m.s.List(m.ctx, indexDuePrefix+dayBucket(m.now.Add(30*day))+"/")
	if err != nil || len(keys) != n {
		b.Fatalf("due index holds %d keys (%v), want %d", len(keys), err, n)
	}
}

// BenchmarkBulkJob measures a rotate/bulk job over 10,000 tenants of 4
// SMTP credentials, from the request to the job's end, run by passes as the
// worker runs them.
func BenchmarkBulkJob(b *testing.B) {
	const tenants, perTenant = 10000, 4
	const stored = tenants * perTenant
	var m *benchMount
	b.Run(fmt.Sprintf("tenants=%dx%d", tenants, perTenant), func(b *testing.B) {
		if m == nil { // the framework calls this more than once
			m = newBenchMount(b)
			m.fill(b, stored, 0)
		}
		runBulkJobs(b, m, stored)
	})
}

func runBulkJobs(b *testing.B, m *benchMount, stored int) {
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		resp, err := m.env.do(logical.UpdateOperation, "rotate/bulk", map[string]interface{}{"reason": "bench"})
		if err != nil || resp.IsError() {
			b.Fatalf("rotate/bulk: %v %v", err, resp)
		}
		// The request started the worker goroutine; the benchmark runs the
		// passes itself so that it knows when the job ends. The job resumes
		// from what the worker stored before it stopped.
		m.env.b.stopWorker()
		m.drain(b)
		j, err := loadJob(m.ctx, m.s, resp.Data["job_id"].(string))
		if err != nil || j == nil || j.State != jobSucceeded || j.Rotated != stored || j.Done != stored {
			b.Fatalf("job %+v (%v), want succeeded with %d rotated", j, err, stored)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*stored)/b.Elapsed().Seconds(), "secrets/s")
}
