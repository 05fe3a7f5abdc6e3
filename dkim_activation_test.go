package penguinmails

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck/dnsfake"
)

// Staged activation of DKIM keys (issue #12), against in-process DNS
// servers (dnsfake) as the configured resolvers and the injected clock.

// newFakeResolver starts an in-process DNS server, closed with the test.
func newFakeResolver(t *testing.T) *dnsfake.Server {
	t.Helper()
	s, err := dnsfake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// newActivationEnv is a mount configured with config (dkim settings).
func newActivationEnv(t *testing.T, config map[string]interface{}) *testEnv {
	t.Helper()
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config", config)
	env.baseline = map[string]bool{configStoragePath: true}
	return env
}

func resolverList(fakes ...*dnsfake.Server) string {
	addrs := make([]string, len(fakes))
	for i, f := range fakes {
		addrs[i] = f.Addr()
	}
	return strings.Join(addrs, ",")
}

// dnsRecords reads {domain}/dns (with check=true when check) and returns
// its publish, revoke and remove lists.
func (env *testEnv) dnsRecords(path string, check bool) map[string][]map[string]interface{} {
	env.t.Helper()
	var q map[string]interface{}
	if check {
		q = map[string]interface{}{"check": true}
	}
	out := env.ok(logical.ReadOperation, path+"/dns", q)
	lists := map[string][]map[string]interface{}{}
	for _, name := range []string{"publish", "revoke", "remove"} {
		for _, r := range out[name].([]interface{}) {
			lists[name] = append(lists[name], r.(map[string]interface{}))
		}
	}
	return lists
}

// recordOf finds version's record in a dns list, or nil.
func recordOf(list []map[string]interface{}, version int) map[string]interface{} {
	for _, r := range list {
		if r["version"] == version {
			return r
		}
	}
	return nil
}

// wantListed checks that version is listed under list (and nowhere else)
// with status, and returns its record.
func (env *testEnv) wantListed(path string, version int, list, status string) map[string]interface{} {
	env.t.Helper()
	lists := env.dnsRecords(path, false)
	var rec map[string]interface{}
	for name, l := range lists {
		if r := recordOf(l, version); r != nil {
			if name != list {
				env.t.Fatalf("version %d listed under %s (%v), want %s", version, name, r, list)
			}
			rec = r
		}
	}
	if rec == nil {
		env.t.Fatalf("version %d not listed in dns: %v", version, lists)
	}
	if rec["status"] != status {
		env.t.Fatalf("version %d listed with status %v, want %s", version, rec["status"], status)
	}
	return rec
}

// serve makes every fake serve the record of version, as dns lists it.
func (env *testEnv) serve(path string, version int, fakes ...*dnsfake.Server) map[string]interface{} {
	env.t.Helper()
	rec := env.wantListed(path, version, "publish", statusPending)
	for _, f := range fakes {
		f.SetTXT(rec["name"].(string), rec["value"].(string)) // the fake splits it into strings of 255 bytes
	}
	return rec
}

// versionStatus is a version's status as a read shows it.
func (env *testEnv) versionStatus(path string, version int) string {
	env.t.Helper()
	versions := env.ok(logical.ReadOperation, path, nil)["versions"].(map[string]interface{})
	v, ok := versions[fmt.Sprint(version)].(map[string]interface{})
	if !ok {
		env.t.Fatalf("version %d not kept: %v", version, versions)
	}
	return v["status"].(string)
}

func (env *testEnv) wantVersionStatus(path string, version int, want string) {
	env.t.Helper()
	if got := env.versionStatus(path, version); got != want {
		env.t.Fatalf("version %d of %s is %s, want %s", version, path, got, want)
	}
}

// code runs a request and returns its HTTP status and error message.
func (env *testEnv) code(op logical.Operation, path string, data map[string]interface{}) (int, string) {
	env.t.Helper()
	resp, err := env.do(op, path, data)
	msg := ""
	if err != nil {
		msg = err.Error()
	} else if resp != nil && resp.IsError() {
		msg = resp.Error().Error()
	}
	return statusOf(op, resp, err), msg
}

// wantSignRefused checks that sign answers 409 naming the activation.
func (env *testEnv) wantSignRefused(path string) {
	env.t.Helper()
	code, msg := env.code(logical.UpdateOperation, path+"/sign", map[string]interface{}{"message": b64(testMessage)})
	if code != 409 || !strings.Contains(msg, "activat") {
		env.t.Fatalf("sign answered %d %q, want 409 naming the activation", code, msg)
	}
}

// signedSelector signs testMessage and returns the signed message and the
// selector sign reports.
func (env *testEnv) signedSelector(path string) (string, string) {
	env.t.Helper()
	out := env.ok(logical.UpdateOperation, path+"/sign", map[string]interface{}{"message": b64(testMessage)})
	return out["dkim_signature"].(string) + testMessage, out["selector"].(string)
}

// servedRecords asks fake for each name, as a receiver's resolver would,
// and returns name -> TXT value for dkimcheck.
func servedRecords(t *testing.T, fake *dnsfake.Server, names ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range names {
		ans, err := dnscheck.Lookup(context.Background(), dnscheck.Resolver{Addr: fake.Addr(), Timeout: 2 * time.Second}, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(ans.Records) == 1 {
			out[name] = ans.Records[0]
		}
	}
	return out
}

// selectorOf is the selector of version as dns lists it.
func (env *testEnv) selectorOf(path string, version int) string {
	env.t.Helper()
	for _, l := range env.dnsRecords(path, false) {
		if r := recordOf(l, version); r != nil {
			return r["selector"].(string)
		}
	}
	env.t.Fatalf("version %d not listed", version)
	return ""
}

func recordName(selector string) string { return selector + "._domainkey.example.com" }

// The default (delay, 1h): the first key is pending, listed to publish,
// refused by sign, active an hour after it was made, and its signatures
// verify against the record dns lists.
func TestDKIMActivation_DefaultDelayActivatesAfterThePublishLead(t *testing.T) {
	fake := newFakeResolver(t)
	env := newActivationEnv(t, map[string]interface{}{"dns_resolvers": fake.Addr()})
	if got := env.ok(logical.ReadOperation, "config", nil)["dkim_activation"]; got != "delay" {
		t.Fatalf("default dkim_activation %v, want delay", got)
	}
	written := env.ok(logical.UpdateOperation, dkimPath, nil)
	if written["status"] != statusPending {
		t.Fatalf("first key written with status %v, want pending", written["status"])
	}
	env.wantSignRefused(dkimPath)
	env.wantListed(dkimPath, 1, "publish", statusPending)

	env.clock.Advance(time.Hour - time.Second)
	env.tick()
	env.wantVersionStatus(dkimPath, 1, statusPending)
	env.wantSignRefused(dkimPath)

	env.clock.Advance(time.Second)
	env.tick()
	env.wantVersionStatus(dkimPath, 1, statusActive)
	env.wantListed(dkimPath, 1, "publish", statusActive)
	signed, selector := env.signedSelector(dkimPath)
	if selector != written["selector"] {
		t.Fatalf("signed with selector %s, want %s", selector, written["selector"])
	}
	if err := dkimcheck.Verify(env.publishedTXT(dkimPath), signed); err != nil {
		t.Fatalf("signature does not verify against the listed record: %v", err)
	}
	if fake.Queries(recordName(selector)) != 0 {
		t.Fatal("delay mode asked the resolver")
	}
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// dns mode: the first key waits for its record at every resolver; a
// mismatching record keeps it pending and check=true shows the difference;
// the checks back off (1m doubling). A rotation stages the new key while
// the old one signs and stays active; at activation the new one signs and
// the old one's overlap starts; after the grace it is listed as revoked for
// dkim_revocation_period, then for removal.
func TestDKIMActivation_DNSModeWaitsForEveryResolverThenRotatesInStages(t *testing.T) {
	f1, f2 := newFakeResolver(t), newFakeResolver(t)
	env := newActivationEnv(t, map[string]interface{}{"dkim_activation": "dns", "dns_resolvers": resolverList(f1, f2)})
	env.ok(logical.UpdateOperation, dkimPath, nil)
	sel1 := env.selectorOf(dkimPath, 1)
	name1 := recordName(sel1)

	env.tick() // first check at once: missing everywhere; next in 1m
	if f1.Queries(name1) == 0 || f2.Queries(name1) == 0 {
		t.Fatalf("first check asked %d and %d times, want both resolvers asked", f1.Queries(name1), f2.Queries(name1))
	}
	env.wantVersionStatus(dkimPath, 1, statusPending)
	env.wantSignRefused(dkimPath)

	// A record with another key (p= of a fresh key) at both resolvers.
	wrong := newActivationEnv(t, map[string]interface{}{"dkim_activation": "immediate"})
	wrongValue := wrong.ok(logical.UpdateOperation, dkimPath, nil)["txt_value"].(string)
	f1.SetTXT(name1, wrongValue)
	f2.SetTXT(name1, wrongValue)
	env.clock.Advance(time.Minute)
	env.tick() // second check: mismatch; next in 2m
	env.wantVersionStatus(dkimPath, 1, statusPending)
	env.wantSignRefused(dkimPath)
	rec := recordOf(env.dnsRecords(dkimPath, true)["publish"], 1)
	for _, r := range rec["dns"].([]map[string]interface{}) {
		if r["status"] != string(dnscheck.StatusMismatch) || !strings.Contains(fmt.Sprint(r["diff"]), "p differs") {
			t.Fatalf("check=true shows %v, want mismatch with a diff naming p", r)
		}
	}

	// The exact record at both: the next check (2m after the last) activates.
	env.serve(dkimPath, 1, f1, f2)
	env.clock.Advance(time.Minute)
	before := f1.Queries(name1)
	env.tick()
	if f1.Queries(name1) != before {
		t.Fatal("checked again 1m after the second check; the backoff is 2m")
	}
	env.wantVersionStatus(dkimPath, 1, statusPending)
	env.clock.Advance(time.Minute)
	env.tick()
	env.wantVersionStatus(dkimPath, 1, statusActive)
	signed, selector := env.signedSelector(dkimPath)
	if selector != sel1 {
		t.Fatalf("signed with %s, want %s", selector, sel1)
	}
	if err := dkimcheck.Verify(servedRecords(t, f1, name1), signed); err != nil {
		t.Fatal(err)
	}

	// Rotation: version 2 is pending; version 1 signs and stays active.
	env.clock.Advance(day)
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "yearly"})
	env.wantVersionStatus(dkimPath, 2, statusPending)
	env.wantVersionStatus(dkimPath, 1, statusActive)
	sel2 := env.selectorOf(dkimPath, 2)
	name2 := recordName(sel2)
	env.tick() // missing: pending
	env.wantVersionStatus(dkimPath, 1, statusActive)
	signed, selector = env.signedSelector(dkimPath)
	if selector != sel1 {
		t.Fatalf("signed with %s while version 2 is pending, want the old %s", selector, sel1)
	}
	if err := dkimcheck.Verify(servedRecords(t, f1, name1, name2), signed); err != nil {
		t.Fatal(err)
	}
	lists := env.dnsRecords(dkimPath, false)
	if recordOf(lists["publish"], 1) == nil || recordOf(lists["publish"], 2) == nil {
		t.Fatalf("dns publish %v, want versions 1 and 2", lists["publish"])
	}

	env.serve(dkimPath, 2, f1, f2)
	env.clock.Advance(time.Minute)
	env.tick()
	activated := env.clock.Now()
	env.wantVersionStatus(dkimPath, 2, statusActive)
	env.wantVersionStatus(dkimPath, 1, dkimStatusRetiring)
	signed, selector = env.signedSelector(dkimPath)
	if selector != sel2 {
		t.Fatalf("signed with %s after activation, want %s", selector, sel2)
	}
	if err := dkimcheck.Verify(servedRecords(t, f2, name1, name2), signed); err != nil {
		t.Fatal(err)
	}
	old := env.wantListed(dkimPath, 1, "publish", dkimStatusRetiring)
	env.wantListed(dkimPath, 2, "publish", statusActive)
	graceEnd := activated.Add(48 * time.Hour)
	if old["grace_until"] != formatTime(graceEnd) {
		t.Fatalf("version 1 grace_until %v, want %s: the overlap starts at activation", old["grace_until"], formatTime(graceEnd))
	}

	// After the grace: listed as revoked (v=DKIM1; p=) for 7 days, then for removal.
	env.clock.Advance(48 * time.Hour)
	env.tick()
	revoked := env.wantListed(dkimPath, 1, "revoke", dkimStatusRetired)
	if revoked["value"] != "v=DKIM1; p=" {
		t.Fatalf("revoked record value %q, want \"v=DKIM1; p=\"", revoked["value"])
	}
	env.clock.Advance(7*day - time.Second)
	env.wantListed(dkimPath, 1, "revoke", dkimStatusRetired)
	env.clock.Advance(time.Second)
	env.wantListed(dkimPath, 1, "remove", dkimStatusRetired)
}

// dkimDNSEnv is a mount in dns mode asking fakes.
func dkimDNSEnv(t *testing.T, fakes ...*dnsfake.Server) *testEnv {
	t.Helper()
	return newActivationEnv(t, map[string]interface{}{"dkim_activation": "dns", "dns_resolvers": resolverList(fakes...)})
}

// With dkim_activation_quorum=1 one resolver serving the record is enough;
// with the default (all) it is not.
func TestDKIMActivation_QuorumOfOneActivatesWithOneResolverServing(t *testing.T) {
	f1, f2 := newFakeResolver(t), newFakeResolver(t)
	env := dkimDNSEnv(t, f1, f2)
	env.ok(logical.UpdateOperation, dkimPath, nil)
	env.serve(dkimPath, 1, f1)
	env.tick()
	env.wantVersionStatus(dkimPath, 1, statusPending) // f2 has nothing: all are required

	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_activation_quorum": 1})
	env.clock.Advance(time.Minute)
	env.tick()
	env.wantVersionStatus(dkimPath, 1, statusActive)
}

// A resolver that never answers: the key stays pending, the checks back off
// (a query per check, not per tick), and check=true reports an error for
// that resolver.
func TestDKIMActivation_SilentResolverIsRetriedWithBackoff(t *testing.T) {
	f := newFakeResolver(t)
	f.Silence(true)
	env := dkimDNSEnv(t, f)
	env.ok(logical.UpdateOperation, dkimPath, nil)
	name := recordName(env.selectorOf(dkimPath, 1))

	queries := func() int { return f.Queries(name) }
	env.tick() // check 1 at 0: times out; next at 1m
	q := queries()
	if q == 0 {
		t.Fatal("the first check asked nothing")
	}
	for _, step := range []struct {
		advance time.Duration
		asks    bool
	}{
		{0, false}, {59 * time.Second, false}, {time.Second, true}, // check 2 at 1m; next at 3m
		{time.Minute, false}, {time.Minute, true}, // check 3 at 3m
	} {
		env.clock.Advance(step.advance)
		env.tick()
		got := queries()
		if asked := got > q; asked != step.asks {
			t.Fatalf("at %s: queries %d -> %d, want asked=%v", env.clock.Now().Format(time.TimeOnly), q, got, step.asks)
		}
		q = got
	}
	env.wantVersionStatus(dkimPath, 1, statusPending)

	rec := recordOf(env.dnsRecords(dkimPath, true)["publish"], 1)
	per := rec["dns"].([]map[string]interface{})
	if len(per) != 1 || per[0]["status"] != string(dnscheck.StatusError) || per[0]["resolver"] != f.Addr() || per[0]["error"] == "" {
		t.Fatalf("check=true with a silent resolver shows %v, want an error for %s", per, f.Addr())
	}
}

// failingRows is rotation/status status=failing's rows' paths.
func (env *testEnv) failingRows() map[string]map[string]interface{} {
	env.t.Helper()
	out := map[string]map[string]interface{}{}
	got := env.ok(logical.ReadOperation, "rotation/status", map[string]interface{}{"status": "failing"})
	rows, _ := got["secrets"].([]interface{})
	for _, r := range rows {
		row := r.(map[string]interface{})
		out[row["path"].(string)] = row
	}
	return out
}

// A key still pending after dkim_activation_deadline is reported once:
// failing in rotation/status, last_rotation_error naming what the resolver
// shows, one activation-overdue event.
func TestDKIMActivation_DeadlineReportsAnOverduePendingKey(t *testing.T) {
	f := newFakeResolver(t)
	env := dkimDNSEnv(t, f)
	env.ok(logical.UpdateOperation, dkimPath, nil)
	env.tick()
	env.clock.Advance(24*time.Hour - time.Minute)
	env.tick() // a check before the deadline: not reported
	if rows := env.failingRows(); len(rows) != 0 {
		t.Fatalf("failing before the deadline: %v", rows)
	}
	if ev := env.events.of("penguinmails/activation-overdue", dkimPath); len(ev) != 0 {
		t.Fatalf("overdue events before the deadline: %v", ev)
	}

	for i := 0; i < 4; i++ { // checks after the deadline: reported once
		env.clock.Advance(15 * time.Minute)
		env.tick()
	}
	row := env.failingRows()[dkimPath]
	if row == nil {
		t.Fatalf("rotation/status status=failing does not list %s after the deadline", dkimPath)
	}
	why := env.ok(logical.ReadOperation, dkimPath, nil)["last_rotation_error"].(string)
	if !strings.Contains(why, f.Addr()+" missing") || row["last_error"] != why {
		t.Fatalf("last_rotation_error %q (status row %v), want it to name %s missing", why, row["last_error"], f.Addr())
	}
	if ev := env.events.of("penguinmails/activation-overdue", dkimPath); len(ev) != 1 || ev[0].meta["version"] != "1" {
		t.Fatalf("activation-overdue events %v, want one for version 1", ev)
	}

	// Published at last: it activates and is no longer failing.
	env.serve(dkimPath, 1, f)
	env.clock.Advance(15 * time.Minute)
	env.tick()
	env.wantVersionStatus(dkimPath, 1, statusActive)
	if rows := env.failingRows(); len(rows) != 0 {
		t.Fatalf("still failing after activation: %v", rows)
	}
	if why := env.ok(logical.ReadOperation, dkimPath, nil)["last_rotation_error"]; why != "" {
		t.Fatalf("last_rotation_error after activation: %q", why)
	}
}

// historyRows is {path}/history's rows, newest first.
func (env *testEnv) historyRows(path string) []map[string]interface{} {
	env.t.Helper()
	var out []map[string]interface{}
	for _, r := range env.ok(logical.ReadOperation, path+"/history", nil)["history"].([]interface{}) {
		out = append(out, r.(map[string]interface{}))
	}
	return out
}

// activate makes the pending key active at once, recorded with its reason;
// with nothing pending it is a 400.
func TestDKIMActivation_ActivateByRequest(t *testing.T) {
	f := newFakeResolver(t)
	env := dkimDNSEnv(t, f)
	env.ok(logical.UpdateOperation, dkimPath, nil)
	got := env.ok(logical.UpdateOperation, dkimPath+"/activate", map[string]interface{}{"reason": "published by hand"})
	if got["version"] != 1 {
		t.Fatalf("activate answered %v", got)
	}
	env.wantVersionStatus(dkimPath, 1, statusActive)
	env.signedSelector(dkimPath)
	if row := env.historyRows(dkimPath)[0]; row["operation"] != "activate" || row["reason"] != "published by hand" || row["to_version"] != 1 {
		t.Fatalf("newest history row %v, want the activation with its reason", row)
	}
	msg := env.badRequest(logical.UpdateOperation, dkimPath+"/activate", map[string]interface{}{"reason": "again"})
	if !strings.Contains(msg, "awaiting activation") {
		t.Fatalf("activate with nothing pending: %q", msg)
	}

	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "yearly"})
	got = env.ok(logical.UpdateOperation, dkimPath+"/activate", map[string]interface{}{"reason": "emergency"})
	if got["version"] != 2 || got["previous_version"] != 1 {
		t.Fatalf("activate of the rotation answered %v", got)
	}
	env.wantVersionStatus(dkimPath, 2, statusActive)
	env.wantVersionStatus(dkimPath, 1, dkimStatusRetiring)
	if row := env.historyRows(dkimPath)[0]; row["operation"] != "activate" || row["reason"] != "emergency" ||
		row["from_version"] != 1 || row["to_version"] != 2 {
		t.Fatalf("newest history row %v", row)
	}
}

// A rotation while a key awaits activation is refused (409); jobs skip
// such a secret and rotate the others.
func TestDKIMActivation_RotateWhilePendingIsRefusedAndJobsSkipIt(t *testing.T) {
	env := newTestEnv(t) // delay mode: no resolver needed
	const other = "dkim/tenant-1/other.example"
	env.ok(logical.UpdateOperation, dkimPath, nil)
	env.ok(logical.UpdateOperation, other, nil)
	env.clock.Advance(time.Hour)
	env.tick()
	env.wantVersionStatus(dkimPath, 1, statusActive)
	env.wantVersionStatus(other, 1, statusActive)

	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "yearly"})
	if code, msg := env.code(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "again"}); code != 409 ||
		!strings.Contains(msg, "awaiting activation") {
		t.Fatalf("rotate while version 2 is pending: %d %q, want 409", code, msg)
	}

	job := env.runJob(env.startJob("rotate-tenant/tenant-1", map[string]interface{}{"types": "dkim", "reason": "tenant drill"}))
	env.wantJobCounts(job, 2, 1, 0)
	if job["skipped"] != 1 {
		t.Fatalf("rotate-tenant job skipped %v, want 1", job["skipped"])
	}
	env.wantVersionStatus(dkimPath, 2, statusPending)
	env.wantVersionStatus(other, 2, statusPending)
	env.wantVersionStatus(other, 1, statusActive)

	job = env.runJob(env.startJob("rotate/bulk", map[string]interface{}{"types": "dkim", "reason": "bulk drill"}))
	env.wantJobCounts(job, 2, 0, 0)
	if job["skipped"] != 2 {
		t.Fatalf("rotate/bulk job skipped %v, want 2", job["skipped"])
	}
	if _, ok := env.ok(logical.ReadOperation, dkimPath, nil)["versions"].(map[string]interface{})["3"]; ok {
		t.Fatal("a job made version 3 while version 2 was pending")
	}
}

// An incident rotation revokes the active key at once, without waiting
// for the new key's DNS; sign refuses until the new key is active.
func TestDKIMActivation_IncidentRotationRevokesAtOnce(t *testing.T) {
	f := newFakeResolver(t)
	env := dkimDNSEnv(t, f)
	env.ok(logical.UpdateOperation, dkimPath, nil)
	env.ok(logical.UpdateOperation, dkimPath+"/activate", map[string]interface{}{"reason": "published"})

	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{
		"revoke_previous": true, "incident_id": "INC-9", "reason": "key leaked"})
	env.wantVersionStatus(dkimPath, 1, statusRevoked)
	env.wantVersionStatus(dkimPath, 2, statusPending)
	if rec := env.wantListed(dkimPath, 1, "revoke", statusRevoked); rec["value"] != "v=DKIM1; p=" {
		t.Fatalf("revoked record %v", rec)
	}
	env.wantListed(dkimPath, 2, "publish", statusPending)
	env.wantSignRefused(dkimPath)

	env.serve(dkimPath, 2, f)
	env.tick()
	env.wantVersionStatus(dkimPath, 2, statusActive)
	env.wantVersionStatus(dkimPath, 1, statusRevoked)
	signed, selector := env.signedSelector(dkimPath)
	if selector != env.selectorOf(dkimPath, 2) {
		t.Fatalf("signed with %s", selector)
	}
	if err := dkimcheck.Verify(servedRecords(t, f, recordName(selector)), signed); err != nil {
		t.Fatal(err)
	}
}

// A secret's activation=immediate overrides config dns.
func TestDKIMActivation_PerSecretImmediateOverridesConfig(t *testing.T) {
	f := newFakeResolver(t)
	env := dkimDNSEnv(t, f)
	written := env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"activation": "immediate"})
	if written["status"] != statusActive {
		t.Fatalf("written with status %v, want active", written["status"])
	}
	env.signedSelector(dkimPath)
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "yearly"})
	env.wantVersionStatus(dkimPath, 2, statusActive)
	env.wantVersionStatus(dkimPath, 1, dkimStatusRetiring)

	// The config's mode still applies to the other domains.
	env.ok(logical.UpdateOperation, "dkim/tenant-1/other.example", nil)
	env.wantVersionStatus("dkim/tenant-1/other.example", 1, statusPending)
}

// Bad activation settings are 400s naming the field, and change nothing.
func TestDKIMActivation_ConfigValidation(t *testing.T) {
	env := newTestEnv(t)
	before := env.ok(logical.ReadOperation, "config", nil)
	for _, tc := range []struct {
		in   map[string]interface{}
		want string
	}{
		{map[string]interface{}{"dkim_activation": "dns"}, "dns_resolvers"},
		{map[string]interface{}{"dns_resolvers": "nohost"}, "dns_resolvers"},
		{map[string]interface{}{"dns_resolvers": "127.0.0.1:53", "dkim_activation_quorum": 2}, "dkim_activation_quorum"},
		{map[string]interface{}{"dkim_delegation_zone": "Bad Zone"}, "dkim_delegation_zone"},
	} {
		msg := env.badRequest(logical.UpdateOperation, "config", tc.in)
		if !strings.Contains(msg, tc.want) {
			t.Errorf("config %v: %q does not name %s", tc.in, msg, tc.want)
		}
	}
	after := env.ok(logical.ReadOperation, "config", nil)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("refused updates changed config:\n%v\n%v", before, after)
	}
}

// waitForQuery polls until fake has been asked for name, for at most a
// second.
func waitForQuery(t *testing.T, fake *dnsfake.Server, name string, before int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for fake.Queries(name) <= before {
		if time.Now().After(deadline) {
			t.Fatalf("no query for %s within a second", name)
		}
		time.Sleep(time.Millisecond)
	}
}

// quickly bounds requests made while a lookup hangs: far below the 2s
// lookup timeout.
const quickly = 500 * time.Millisecond

// DNS lookups never hold up other requests on the secret: while dns
// check=true waits on a silent resolver, a read, a sign and a write of the
// same secret answer at once.
func TestDKIMActivation_DNSCheckDoesNotBlockTheSecret(t *testing.T) {
	f := newFakeResolver(t)
	f.Silence(true)
	env := dkimDNSEnv(t, f)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"activation": "immediate"})
	name := recordName(env.selectorOf(dkimPath, 1))

	type result struct {
		lists map[string]interface{}
		err   error
		end   time.Time
	}
	done := make(chan result, 1)
	go func() {
		resp, err := env.do(logical.ReadOperation, dkimPath+"/dns", map[string]interface{}{"check": true})
		r := result{err: err, end: time.Now()}
		if err == nil && resp != nil && !resp.IsError() {
			r.lists = resp.Data
		}
		done <- r
	}()
	waitForQuery(t, f, name, 0)

	start := time.Now()
	env.ok(logical.ReadOperation, dkimPath, nil)
	env.signedSelector(dkimPath)
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector_prefix": "mx"})
	took, finished := time.Since(start), time.Now()
	r := <-done
	if r.err != nil || r.lists == nil {
		t.Fatalf("dns check=true: %v", r.err)
	}
	if !finished.Before(r.end) {
		t.Fatal("the requests finished after the check: they did not run while it waited")
	}
	if took > quickly {
		t.Fatalf("read, sign and write took %s while a lookup hung; want under %s", took, quickly)
	}
	per := r.lists["publish"].([]interface{})[0].(map[string]interface{})["dns"].([]map[string]interface{})
	if per[0]["status"] != string(dnscheck.StatusError) {
		t.Fatalf("check of a silent resolver: %v", per)
	}
}

// The worker's activation check does not hold up requests on the secret
// either: while it waits on a silent resolver, a write and an activate of
// the same secret answer at once.
func TestDKIMActivation_WorkerCheckDoesNotBlockTheSecret(t *testing.T) {
	f := newFakeResolver(t)
	f.Silence(true)
	env := dkimDNSEnv(t, f)
	env.ok(logical.UpdateOperation, dkimPath, nil)
	name := recordName(env.selectorOf(dkimPath, 1))

	ticked := make(chan time.Time, 1)
	go func() {
		req := &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}
		_, _ = env.b.HandleRequest(context.Background(), req)
		ticked <- time.Now()
	}()
	waitForQuery(t, f, name, 0)

	start := time.Now()
	env.ok(logical.UpdateOperation, dkimPath, map[string]interface{}{"selector_prefix": "mx"})
	env.ok(logical.UpdateOperation, dkimPath+"/activate", map[string]interface{}{"reason": "published by hand"})
	took, finished := time.Since(start), time.Now()
	end := <-ticked
	if !finished.Before(end) {
		t.Fatal("the requests finished after the check")
	}
	if took > quickly {
		t.Fatalf("write and activate took %s while the worker's lookup hung; want under %s", took, quickly)
	}
	// The check's late result does not undo or repeat the activation.
	env.wantVersionStatus(dkimPath, 1, statusActive)
	if rows := env.historyRows(dkimPath); rows[0]["operation"] != "activate" || rows[0]["reason"] != "published by hand" {
		t.Fatalf("newest history row %v", rows[0])
	}
	env.signedSelector(dkimPath)
}

// A worker check made without the lock answers for the version it looked
// at: if that version was activated and another one staged while the check
// waited, the check's "ready" does not activate the new one.
func TestDKIMActivation_LateCheckDoesNotActivateANewerPendingKey(t *testing.T) {
	serving, silent := newFakeResolver(t), newFakeResolver(t)
	env := dkimDNSEnv(t, serving, silent)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_activation_quorum": 1})
	env.ok(logical.UpdateOperation, dkimPath, nil)
	env.serve(dkimPath, 1, serving)
	silent.Silence(true) // the check is ready (quorum 1) only after the silent one's timeout
	name := recordName(env.selectorOf(dkimPath, 1))

	ticked := make(chan struct{})
	go func() {
		req := &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}
		_, _ = env.b.HandleRequest(context.Background(), req)
		close(ticked)
	}()
	waitForQuery(t, silent, name, 0)
	env.ok(logical.UpdateOperation, dkimPath+"/activate", map[string]interface{}{"reason": "published by hand"})
	env.ok(logical.UpdateOperation, dkimPath+"/rotate", map[string]interface{}{"reason": "yearly"})
	<-ticked

	env.wantVersionStatus(dkimPath, 2, statusPending)
	env.wantVersionStatus(dkimPath, 1, statusActive)
}

// The DKIM settings are decoded when the config is loaded or written: a
// write and another node's write (an invalidation) are seen at once, and a
// stored setting that does not decode fails the requests that need the
// config instead of running them with the defaults.
func TestDKIMActivation_SettingsDecodedWithTheConfig(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	lead := func() time.Duration {
		cfg, err := env.b.config(ctx, env.storage)
		if err != nil {
			t.Fatal(err)
		}
		return dkimOptionsOf(cfg).PublishLead
	}
	if got := lead(); got != time.Hour {
		t.Fatalf("default publish lead %s, want 1h", got)
	}
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_publish_lead": "2h"})
	if got := lead(); got != 2*time.Hour {
		t.Fatalf("publish lead after a write %s, want 2h", got)
	}
	storeTypeSettings := func(dkim string) {
		entry, err := logical.StorageEntryJSON(configStoragePath, &engineConfig{MaxVersions: 5,
			TypeSettings: map[string]json.RawMessage{"dkim": json.RawMessage(dkim)}})
		if err != nil {
			t.Fatal(err)
		}
		if err := env.storage.Put(ctx, entry); err != nil {
			t.Fatal(err)
		}
		env.b.invalidate(ctx, configStoragePath) // as when another node wrote it
	}
	storeTypeSettings(`{"activation":"delay","publish_lead":10800000000000}`)
	if got := lead(); got != 3*time.Hour {
		t.Fatalf("publish lead after an invalidation %s, want 3h", got)
	}
	storeTypeSettings(`{"publish_lead":"not a duration"}`)
	if _, err := env.b.config(ctx, env.storage); err == nil || !strings.Contains(err.Error(), "dkim settings") {
		t.Fatalf("config with undecodable dkim settings: %v, want an error naming them", err)
	}
	if code, msg := env.code(logical.UpdateOperation, dkimPath, nil); code < 500 || !strings.Contains(msg, "dkim settings") {
		t.Fatalf("dkim write under undecodable settings answered %d %q, want a 5xx naming them", code, msg)
	}
	if keys := env.storedKeys(); len(keys) != 1 || keys[0] != configStoragePath {
		t.Fatalf("a failed write stored %v", keys)
	}
}
