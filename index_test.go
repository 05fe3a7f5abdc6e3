package penguinmails

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// allKeys lists every key under prefix, recursively.
func (env *engEnv) allKeys(prefix string) []string {
	env.t.Helper()
	var out []string
	keys, err := env.inner.List(context.Background(), prefix)
	if err != nil {
		env.t.Fatal(err)
	}
	for _, k := range keys {
		if strings.HasSuffix(k, "/") {
			out = append(out, env.allKeys(prefix+k)...)
		} else {
			out = append(out, prefix+k)
		}
	}
	return out
}

func (env *engEnv) indexState(b *backend) string {
	env.t.Helper()
	resp, err := env.do(b, logical.ReadOperation, "rotation/status", map[string]interface{}{"limit": 1})
	if err != nil || resp == nil || resp.IsError() {
		env.t.Fatalf("rotation/status: %v %v", err, resp)
	}
	return resp.Data["index"].(map[string]interface{})["state"].(string)
}

// The index rebuild runs in bounded batches with a stored cursor: a fresh
// backend resumes from the cursor (it reads none of the secrets already
// done), rotation/status reports "rebuilding" until it finishes, and
// afterwards every secret's index keys are back in storage.
func TestIndex_RebuildResumesFromItsCursor(t *testing.T) {
	const tenants, perTenant = 250, 10
	env := newEngEnv(t)
	for i := 0; i < tenants; i++ {
		for j := 0; j < perTenant; j++ {
			env.writeFake(fmt.Sprintf("t%03d", i), fmt.Sprintf("s%02d", j), nil)
		}
	}
	// The first pass builds the index; its worker is stopped and the
	// rest done here, so that no pass runs behind the test's back.
	ctx := context.Background()
	env.tick(env.b)
	env.b.clean(ctx)
	for more := true; more; {
		var err error
		if more, err = env.b.workPass(ctx, env.s); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range env.allKeys("index/") {
		if k != indexMetaPath {
			if err := env.inner.Delete(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}

	b1 := env.fresh()
	if err := b1.startIndexRebuild(ctx, env.s, "index lost"); err != nil {
		t.Fatal(err)
	}
	if more, err := b1.workPass(ctx, env.s); err != nil || !more {
		t.Fatalf("first pass: more %v, err %v; want more work", more, err)
	}
	st, err := loadRebuild(ctx, env.inner)
	if err != nil || st == nil || st.Kind != "fake" || st.After == "" || st.Done < rebuildBudget || st.Done >= tenants*perTenant {
		t.Fatalf("rebuild state after one pass: %+v %v", st, err)
	}
	if s := env.indexState(b1); s != "rebuilding" {
		t.Fatalf("index state during the rebuild: %q", s)
	}

	b2 := env.fresh()
	env.s.resetCounts()
	after, doneBefore := st.After, st.Done
	if _, err := b2.workPass(ctx, env.s); err != nil {
		t.Fatal(err)
	}
	env.s.mu.Lock()
	for key := range env.s.gets {
		if kind, tenant, _, ok := splitSecretKey(key); ok && strings.HasPrefix(key, secretsStoragePrefix) && kind == "fake" && tenant <= after {
			t.Errorf("the resumed rebuild read %s, at or before its cursor %s", key, after)
		}
	}
	env.s.mu.Unlock()
	st, _ = loadRebuild(ctx, env.inner)
	if st.Done <= doneBefore || st.After <= after {
		t.Fatalf("the resumed pass did not advance: %+v (was done %d after %s)", st, doneBefore, after)
	}

	for pass := 0; st.Finished.IsZero(); pass++ {
		if pass > 5 {
			t.Fatalf("the rebuild did not finish: %+v", st)
		}
		if _, err := b2.workPass(ctx, env.s); err != nil {
			t.Fatal(err)
		}
		st, _ = loadRebuild(ctx, env.inner)
	}
	if st.Done != tenants*perTenant {
		t.Fatalf("rebuild counted %d secrets, want %d", st.Done, tenants*perTenant)
	}
	if s := env.indexState(b2); s != "ready" {
		t.Fatalf("index state after the rebuild: %q", s)
	}
	missing := 0
	for i := 0; i < tenants; i++ {
		e := env.entry("fake", fmt.Sprintf("t%03d", i), "s00")
		for _, k := range []string{e.Indexed.Due, e.Indexed.Work} {
			if raw, _ := env.inner.Get(ctx, k); k == "" || raw == nil {
				missing++
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d index keys of rebuilt secrets are not in storage", missing)
	}
	resp, err := env.do(b2, logical.ReadOperation, "rotation/status", map[string]interface{}{"limit": maxStatusLimit})
	if err != nil || resp.Data["count"] != maxStatusLimit {
		t.Fatalf("rotation/status after the rebuild: %v rows, %v", resp.Data["count"], err)
	}
}
