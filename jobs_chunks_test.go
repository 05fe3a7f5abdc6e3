package penguinmails

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// A job whose plan spans two chunks rotates every secret once: the plan
// resumes inside a tenant, and a pass that crosses from one chunk to the
// next (groups of 3 against a per-pass budget of 100 put the boundary
// inside a pass) replaces the chunk it decoded once.
func TestBulkJob_CrossesPlanChunksInsideAPass(t *testing.T) {
	m := newBenchMount(t)
	m.env.ok(logical.UpdateOperation, "config", map[string]interface{}{"job_concurrency": 3})
	var err error
	if m.cfg, err = m.env.b.config(m.ctx, m.s); err != nil {
		t.Fatal(err)
	}
	// The first chunk ends inside tenant t0000249, so the second one resumes
	// in the middle of a tenant.
	const stored = jobChunkSize + 1
	m.fill(t, jobChunkSize, 0)
	extra := m.entry(0, m.now)
	extra.Tenant, extra.Name = "t0000249", "m4"
	if err := m.env.b.store(m.ctx, m.s, extra, m.env.b.kinds["smtp"], m.cfg, m.now); err != nil {
		t.Fatal(err)
	}
	secrets := [][2]string{{extra.Tenant, extra.Name}}
	for i := 0; i < jobChunkSize; i++ {
		tenant, name := benchName(i)
		secrets = append(secrets, [2]string{tenant, name})
	}
	id := m.env.ok(logical.UpdateOperation, "rotate/bulk", map[string]interface{}{"reason": "chunks"})["job_id"].(string)
	m.env.b.stopWorker() // the test runs the passes itself
	m.drain(t)

	j, err := loadJob(m.ctx, m.s, id)
	if err != nil || j == nil {
		t.Fatalf("job %s: %v", id, err)
	}
	if j.State != jobSucceeded || j.Chunks != 2 || j.Total != stored || j.Rotated != stored || j.Done != stored {
		t.Fatalf("job: state %s chunks %d total %d done %d rotated %d, want succeeded, 2 chunks, %d of each",
			j.State, j.Chunks, j.Total, j.Done, j.Rotated, stored)
	}
	for _, sn := range secrets {
		tenant, name := sn[0], sn[1]
		e, err := loadSecret(m.ctx, m.s, "smtp", tenant, name)
		if err != nil || e == nil {
			t.Fatalf("%s/%s: %v", tenant, name, err)
		}
		rows := 0
		for _, h := range e.History {
			if h.JobID == id {
				rows++
			}
		}
		if e.CurrentVersion != m.tpl.CurrentVersion+1 || rows != 1 {
			t.Fatalf("%s/%s: version %d with %d rows of the job, want version %d and 1 row", tenant, name, e.CurrentVersion, rows, m.tpl.CurrentVersion+1)
		}
	}
}
