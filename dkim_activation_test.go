package penguinmails

import (
	"context"
	"encoding/base64"
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
