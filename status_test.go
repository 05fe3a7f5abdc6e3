package penguinmails

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"
)

// status reads one page of rotation/status.
func (env *testEnv) status(query map[string]interface{}) map[string]interface{} {
	env.t.Helper()
	return env.ok(logical.ReadOperation, "rotation/status", query)
}

// statusRows is the rows of a rotation/status page.
func statusRows(page map[string]interface{}) []map[string]interface{} {
	var out []map[string]interface{}
	for _, r := range page["secrets"].([]interface{}) {
		out = append(out, r.(map[string]interface{}))
	}
	return out
}

func indexStateOf(page map[string]interface{}) string {
	return page["index"].(map[string]interface{})["state"].(string)
}

// mixedSecrets writes one secret in every rotation state and returns the
// env two days after, with the index rebuilt:
//
//	smtp/t2/fail  auto_rotate, overdue since 2026-12-01, its rotation failing
//	smtp/t1/over  overdue (rotation_period 1d)
//	smtp/t1/soon  due_soon (rotation_period 5d: due in 3 days)
//	smtp/t1/fine  healthy (rotation_period 60d)
//	dkim/t1/example.com  healthy (365d)
//	ssh/t1/key    not_scheduled (config ssh_rotation_period=0)
func mixedSecrets(t *testing.T) *testEnv {
	env := newImmediateDKIMEnv(t)
	env.dueRotationThatFails("smtp/t2/fail") // the clock is now 31 days on
	env.tick()
	for name, period := range map[string]string{"over": "1d", "soon": "5d", "fine": "60d"} {
		in := smtpInput()
		in["rotation_period"] = period
		env.ok(logical.UpdateOperation, "smtp/t1/"+name, in)
	}
	env.ok(logical.UpdateOperation, "dkim/t1/example.com", map[string]interface{}{"key_type": "ed25519"})
	env.ok(logical.UpdateOperation, "ssh/t1/key", nil)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"ssh_rotation_period": 0}) // rebuilds the index
	env.clock.Advance(2 * day)
	env.tick()
	return env
}

var mixedOrder = []string{"smtp/t2/fail", "smtp/t1/over", "smtp/t1/soon", "smtp/t1/fine", "dkim/t1/example.com", "ssh/t1/key"}

func TestRotationStatus_RowsComeSoonestDueFirstWithTheirState(t *testing.T) {
	env := mixedSecrets(t)
	page := env.status(nil)
	if indexStateOf(page) != "ready" {
		t.Fatalf("index after a tick: %v", page["index"])
	}
	if got := statusPaths(page); !reflect.DeepEqual(got, mixedOrder) {
		t.Fatalf("rows %v, want %v (soonest due first, never scheduled last)", got, mixedOrder)
	}
	want := map[string]struct {
		status, risk string
		failing      bool
	}{
		"smtp/t2/fail":        {rotationOverdue, "medium", true},
		"smtp/t1/over":        {rotationOverdue, "medium", false},
		"smtp/t1/soon":        {rotationDueSoon, "medium", false},
		"smtp/t1/fine":        {rotationHealthy, "medium", false},
		"dkim/t1/example.com": {rotationHealthy, "low", false},
		"ssh/t1/key":          {rotationNotScheduled, "high", false},
	}
	for _, r := range statusRows(page) {
		w := want[r["path"].(string)]
		if r["status"] != w.status || r["risk_level"] != w.risk || r["failing"] != w.failing {
			t.Errorf("%s: status %v risk %v failing %v, want %+v", r["path"], r["status"], r["risk_level"], r["failing"], w)
		}
	}
	fail := statusRows(page)[0]
	// Two ticks, two failed attempts: the backoff (a minute) had passed.
	if fail["last_error"] == "" || fail["rotation_failures"] != 2 || fail["auto_rotate"] != true {
		t.Fatalf("failing row %v", fail)
	}
	if page["count"] != len(mixedOrder) || page["next_after"] != "" {
		t.Fatalf("count %v, next_after %q", page["count"], page["next_after"])
	}
}

func TestRotationStatus_Filters(t *testing.T) {
	env := mixedSecrets(t)
	for _, tc := range []struct {
		query map[string]interface{}
		want  []string
	}{
		{map[string]interface{}{"status": rotationOverdue}, []string{"smtp/t2/fail", "smtp/t1/over"}},
		{map[string]interface{}{"status": rotationDueSoon}, []string{"smtp/t1/soon"}},
		{map[string]interface{}{"status": rotationHealthy}, []string{"smtp/t1/fine", "dkim/t1/example.com"}},
		{map[string]interface{}{"status": rotationNotScheduled}, []string{"ssh/t1/key"}},
		{map[string]interface{}{"status": rotationFailing}, []string{"smtp/t2/fail"}},
		{map[string]interface{}{"due_within": "7d"}, []string{"smtp/t2/fail", "smtp/t1/over", "smtp/t1/soon"}},
		{map[string]interface{}{"due_within": "1d"}, []string{"smtp/t2/fail", "smtp/t1/over"}},
		{map[string]interface{}{"type": "ssh"}, []string{"ssh/t1/key"}},
		{map[string]interface{}{"type": "smtp,dkim", "status": rotationHealthy}, []string{"smtp/t1/fine", "dkim/t1/example.com"}},
		{map[string]interface{}{"type": "dkim", "due_within": "7d"}, []string{}},
		{map[string]interface{}{"tenant": "t2"}, []string{"smtp/t2/fail"}},
		{map[string]interface{}{"tenant": "t1"}, mixedOrder[1:]},
		{map[string]interface{}{"tenant": "t1", "status": rotationDueSoon}, []string{"smtp/t1/soon"}},
		{map[string]interface{}{"tenant": "t1", "type": "ssh,dkim"}, []string{"dkim/t1/example.com", "ssh/t1/key"}},
		{map[string]interface{}{"tenant": "t2", "status": rotationFailing}, []string{"smtp/t2/fail"}},
		{map[string]interface{}{"tenant": "t1", "due_within": "7d"}, []string{"smtp/t1/over", "smtp/t1/soon"}},
		{map[string]interface{}{"tenant": "t9"}, []string{}},
	} {
		if got := statusPaths(env.status(tc.query)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v: rows %v, want %v", tc.query, got, tc.want)
		}
	}
}

func TestRotationStatus_BadQueriesAre400NamingTheField(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/a", smtpInput())
	for _, tc := range []struct {
		query   map[string]interface{}
		mention []string
	}{
		{map[string]interface{}{"status": "late"}, []string{"status", "late", "overdue", "failing"}},
		{map[string]interface{}{"status": "all"}, []string{"status"}},
		{map[string]interface{}{"limit": 0}, []string{"limit", "1000"}},
		{map[string]interface{}{"limit": 1001}, []string{"limit", "1000"}},
		{map[string]interface{}{"limit": -5}, []string{"limit"}},
		{map[string]interface{}{"type": "bogus"}, []string{"type", "bogus"}},
		{map[string]interface{}{"type": "smtp,bogus"}, []string{"type", "bogus"}},
		{map[string]interface{}{"tenant": "a/b"}, []string{"tenant"}},
		{map[string]interface{}{"due_within": "soon"}, []string{"due_within"}},
		{map[string]interface{}{"due_within": -60}, []string{"due_within"}},
		{map[string]interface{}{"after": strings.Repeat("x", 601)}, []string{"after"}},
	} {
		msg := env.badRequest(logical.ReadOperation, "rotation/status", tc.query)
		for _, m := range tc.mention {
			if !strings.Contains(msg, m) {
				t.Errorf("%v: message %q does not mention %q", tc.query, msg, m)
			}
		}
	}
}

func TestRotationStatus_RiskLevelPerTypeFollowsConfig(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/a", smtpInput())
	env.ok(logical.UpdateOperation, "ssh/t1/key", nil)
	env.ok(logical.UpdateOperation, "dkim/t1/example.com", map[string]interface{}{"key_type": "ed25519"})
	risk := func() map[string]interface{} {
		out := map[string]interface{}{}
		for _, r := range statusRows(env.status(nil)) {
			out[r["type"].(string)] = r["risk_level"]
		}
		return out
	}
	if got := risk(); !reflect.DeepEqual(got, map[string]interface{}{"smtp": "medium", "ssh": "high", "dkim": "low"}) {
		t.Fatalf("default risk levels %v", got)
	}
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"ssh_risk_level": "critical"})
	if got := risk(); !reflect.DeepEqual(got, map[string]interface{}{"smtp": "medium", "ssh": "critical", "dkim": "low"}) {
		t.Fatalf("risk levels after ssh_risk_level=critical %v", got)
	}
	if r := env.ok(logical.ReadOperation, "ssh/t1/key", nil)["risk_level"]; r != "critical" {
		t.Fatalf("a read of the SSH key shows risk_level %v", r)
	}
	msg := env.badRequest(logical.UpdateOperation, "config", map[string]interface{}{"dkim_risk_level": "severe"})
	if !strings.Contains(msg, "dkim_risk_level") || !strings.Contains(msg, "low, medium, high, critical") {
		t.Fatalf("bad risk level: %q", msg)
	}
}

// 250 secrets over three pages of 100: every one exactly once, soonest due
// first across the page boundaries, with ties (same due second) in path
// order.
func TestRotationStatus_PagesCoverEverySecretOnce(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	written := map[string]bool{}
	for i := 0; i < 250; i++ {
		in := smtpInput()
		in["rotation_period"] = fmt.Sprintf("%dd", i*37%84+1) // up to three secrets due at the same second, in scrambled order
		path := fmt.Sprintf("smtp/t%d/m%03d", i%5, i)
		env.ok(logical.UpdateOperation, path, in)
		written[path] = true
	}
	env.tick()

	var rows []map[string]interface{}
	after, pages := "", 0
	for {
		page := env.status(map[string]interface{}{"limit": 100, "after": after})
		pages++
		rows = append(rows, statusRows(page)...)
		if after = page["next_after"].(string); after == "" {
			break
		}
		if pages > 3 {
			t.Fatalf("more than 3 pages of 100 for 250 secrets")
		}
	}
	if pages != 3 || len(rows) != 250 {
		t.Fatalf("%d pages with %d rows, want 3 pages, 250 rows", pages, len(rows))
	}
	seen := map[string]bool{}
	for i, r := range rows {
		path := r["path"].(string)
		if seen[path] || !written[path] {
			t.Fatalf("row %d: %s is a duplicate or was never written", i, path)
		}
		seen[path] = true
		if i == 0 {
			continue
		}
		prev := rows[i-1]
		if r["next_rotation"].(string) < prev["next_rotation"].(string) ||
			r["next_rotation"] == prev["next_rotation"] && path < prev["path"].(string) {
			t.Fatalf("row %d (%s, %s) comes after (%s, %s)", i, path, r["next_rotation"], prev["path"], prev["next_rotation"])
		}
	}

	// One tenant's rows page the same way (read directly, not from the
	// index).
	var tenant []string
	after, pages = "", 0
	for pages < 10 {
		page := env.status(map[string]interface{}{"tenant": "t3", "limit": 20, "after": after})
		pages++
		tenant = append(tenant, statusPaths(page)...)
		if after = page["next_after"].(string); after == "" {
			break
		}
	}
	var want []string
	for _, r := range rows {
		if r["tenant"] == "t3" {
			want = append(want, r["path"].(string))
		}
	}
	if pages != 3 || !reflect.DeepEqual(tenant, want) {
		t.Fatalf("tenant t3 in %d pages of 20: %v, want the 50 in %v", pages, tenant, want)
	}
}

func TestRotationStatus_IndexReadyAfterATick(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/a", smtpInput())
	resp, err := env.do(logical.ReadOperation, "rotation/status", nil)
	if err != nil || resp.IsError() {
		t.Fatal(resp, err)
	}
	// A mount whose index was never built says so until the first pass.
	if indexStateOf(resp.Data) != "rebuilding" || len(resp.Warnings) == 0 {
		t.Fatalf("before the first tick: index %v, warnings %v", resp.Data["index"], resp.Warnings)
	}
	env.tick()
	resp, err = env.do(logical.ReadOperation, "rotation/status", nil)
	if err != nil || resp.IsError() {
		t.Fatal(resp, err)
	}
	if idx := resp.Data["index"].(map[string]interface{}); idx["state"] != "ready" || idx["rebuild_done"] != 1 || len(resp.Warnings) != 0 {
		t.Fatalf("after a tick: index %v, warnings %v", idx, resp.Warnings)
	}
	if got := statusPaths(resp.Data); !reflect.DeepEqual(got, []string{"smtp/t1/a"}) {
		t.Fatalf("rows %v", got)
	}
	// A change of a default period rebuilds the index; a tick finishes it.
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"smtp_rotation_period": "60d"})
	if st := indexStateOf(env.status(nil)); st != "rebuilding" {
		t.Fatalf("after a period change: index %s, want rebuilding", st)
	}
	env.tick()
	page := env.status(nil)
	if indexStateOf(page) != "ready" {
		t.Fatalf("after the rebuild: %v", page["index"])
	}
	if next := statusRows(page)[0]["next_rotation"]; next != "2026-12-31T09:00:00Z" {
		t.Fatalf("next_rotation after smtp_rotation_period=60d: %v", next)
	}
}

// A crash between the Put of an entry and the Delete of its old index keys
// leaves a stale key; rotation/status checks each key against its entry and
// shows the secret once, as it is now.
func TestRotationStatus_SkipsStaleIndexKeys(t *testing.T) {
	env := newImmediateDKIMEnv(t)
	env.ok(logical.UpdateOperation, "smtp/t1/a", smtpInput())
	old := env.storedEntry("smtp", "t1", "a").Indexed.Due
	env.ok(logical.UpdateOperation, "smtp/t1/a", map[string]interface{}{"rotation_period": "10d"})
	if now := env.storedEntry("smtp", "t1", "a").Indexed.Due; now == old {
		t.Fatalf("a new rotation_period left the due key at %s", old)
	}
	if err := env.storage.Put(context.Background(), &logical.StorageEntry{Key: old}); err != nil {
		t.Fatal(err)
	}
	env.tick()
	for _, q := range []map[string]interface{}{nil, {"status": rotationHealthy}, {"limit": 1}} {
		rows := statusRows(env.status(q))
		if len(rows) != 1 || rows[0]["next_rotation"] != "2026-11-11T09:00:00Z" {
			t.Fatalf("%v: rows %v, want the secret once, due in 10 days", q, rows)
		}
	}
	// The cursor of a page that ends on the live key does not bring the
	// stale one back on the next page.
	first := env.status(map[string]interface{}{"limit": 1})
	if next := env.status(map[string]interface{}{"limit": 1, "after": first["next_after"]}); len(statusRows(next)) != 0 {
		t.Fatalf("second page %v", next["secrets"])
	}
}

// rotation/status/{tenant} is the tenant-scoped form a templated policy can
// grant: for every filter it answers exactly what rotation/status?tenant=X
// answers, and it cannot be widened to another tenant by a query field.
func TestRotationStatus_TenantPathAnswersAsTheTenantQuery(t *testing.T) {
	env := mixedSecrets(t)
	for _, tc := range []struct {
		tenant string
		query  map[string]interface{}
		want   []string
	}{
		{"t1", nil, mixedOrder[1:]},
		{"t2", nil, []string{"smtp/t2/fail"}},
		{"t1", map[string]interface{}{"status": rotationDueSoon}, []string{"smtp/t1/soon"}},
		{"t1", map[string]interface{}{"type": "ssh,dkim"}, []string{"dkim/t1/example.com", "ssh/t1/key"}},
		{"t2", map[string]interface{}{"status": rotationFailing}, []string{"smtp/t2/fail"}},
		{"t1", map[string]interface{}{"due_within": "7d"}, []string{"smtp/t1/over", "smtp/t1/soon"}},
		{"t1", map[string]interface{}{"limit": 2}, mixedOrder[1:3]},
		{"t9", nil, []string{}},
	} {
		byPath := env.ok(logical.ReadOperation, "rotation/status/"+tc.tenant, tc.query)
		withTenant := map[string]interface{}{"tenant": tc.tenant}
		for k, v := range tc.query {
			withTenant[k] = v
		}
		byQuery := env.status(withTenant)
		if got := statusPaths(byPath); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("rotation/status/%s %v: rows %v, want %v", tc.tenant, tc.query, got, tc.want)
		}
		if !reflect.DeepEqual(byPath, byQuery) {
			t.Errorf("rotation/status/%s %v answers\n%v\nrotation/status?tenant=%s answers\n%v", tc.tenant, tc.query, byPath, tc.tenant, byQuery)
		}
	}
	// The cursor of one page leads to the next on the same path.
	first := env.ok(logical.ReadOperation, "rotation/status/t1", map[string]interface{}{"limit": 2})
	next := env.ok(logical.ReadOperation, "rotation/status/t1", map[string]interface{}{"limit": 2, "after": first["next_after"]})
	if got := statusPaths(next); !reflect.DeepEqual(got, mixedOrder[3:5]) {
		t.Errorf("second page of rotation/status/t1: %v, want %v", got, mixedOrder[3:5])
	}
}

func TestRotationStatus_TenantPathRefusesATenantQueryAndBadInput(t *testing.T) {
	env := mixedSecrets(t)
	for _, tc := range []struct {
		path    string
		query   map[string]interface{}
		mention []string
	}{
		{"rotation/status/t1", map[string]interface{}{"tenant": "t2"}, []string{"tenant", "rotation/status/{tenant}"}},
		{"rotation/status/t1", map[string]interface{}{"status": "late"}, []string{"status", "late"}},
		{"rotation/status/t1", map[string]interface{}{"limit": 0}, []string{"limit", "1000"}},
		{"rotation/status/t1", map[string]interface{}{"bogus": "x"}, []string{"bogus"}},
		{"rotation/status/-bad", nil, []string{"tenant"}},
		{"rotation/status/a..b", nil, []string{"tenant"}},
	} {
		msg := env.badRequest(logical.ReadOperation, tc.path, tc.query)
		for _, m := range tc.mention {
			if !strings.Contains(msg, m) {
				t.Errorf("%s %v: message %q does not mention %q", tc.path, tc.query, msg, m)
			}
		}
	}
}
