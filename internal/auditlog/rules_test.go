package auditlog

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

const denied = "1 error occurred:\n\t* permission denied\n\n"

// failures returns n failed requests from ip, every step apart.
func failures(ip string, n int, start, step time.Duration) []entry {
	var out []entry
	for i := 0; i < n; i++ {
		out = append(out, entry{Path: fmt.Sprintf("smtp/t%d/mail", i), IP: ip, Error: denied, Time: at(start + time.Duration(i)*step)})
	}
	return out
}

func TestRuleFailedRequests(t *testing.T) {
	cases := []struct {
		name    string
		entries []entry
		want    int
	}{
		{"5 within 5 minutes", failures("10.0.0.9", 5, 0, time.Minute), 1},
		{"4 within 5 minutes", failures("10.0.0.9", 4, 0, time.Second), 0},
		{"5 over 5 minutes and 4 seconds", failures("10.0.0.9", 5, 0, 76*time.Second), 0},
		{"a burst of 12 is one alert", failures("10.0.0.9", 12, 0, time.Second), 1},
		{"two bursts 10 minutes apart", append(failures("10.0.0.9", 5, 0, time.Second), failures("10.0.0.9", 5, 10*time.Minute, time.Second)...), 2},
		{"5 spread over 3 sources", append(failures("10.0.0.1", 2, 0, time.Second), append(failures("10.0.0.2", 2, 0, time.Second), failures("10.0.0.3", 1, 0, time.Second)...)...), 0},
	}
	// Successes from the same source do not count.
	var ok []entry
	for i := 0; i < 10; i++ {
		ok = append(ok, entry{Path: "smtp/t1/mail", IP: "10.0.0.9", Time: at(time.Duration(i) * time.Second)})
	}
	cases = append(cases, struct {
		name    string
		entries []entry
		want    int
	}{"10 successes", ok, 0})
	for _, tc := range cases {
		c, _ := process(t, Options{}, logOf(tc.entries...))
		got := c.alertsOf(RuleFailedRequests)
		if len(got) != tc.want {
			t.Errorf("%s: %d alerts, want %d", tc.name, len(got), tc.want)
		}
		if len(got) > 0 && !strings.Contains(got[0].Detail, "5 failed requests from 10.0.0.9") {
			t.Errorf("%s: detail %q", tc.name, got[0].Detail)
		}
	}
	// The threshold and window are configurable.
	cfg := DefaultRuleConfig()
	cfg.FailThreshold, cfg.FailWindow = 3, time.Minute
	c, _ := process(t, Options{Rules: cfg}, logOf(failures("10.0.0.9", 3, 0, 20*time.Second)...))
	if len(c.alertsOf(RuleFailedRequests)) != 1 {
		t.Errorf("3 in 40s with threshold 3 in 1m: no alert")
	}
}

func reads(caller string, n int, step time.Duration) []entry {
	var out []entry
	for i := 0; i < n; i++ {
		out = append(out, entry{Path: fmt.Sprintf("api-keys/t%d/key", i%7), Entity: caller, Time: at(time.Duration(i) * step)})
	}
	return out
}

func TestRuleBulkReads(t *testing.T) {
	cases := []struct {
		name    string
		entries []entry
		want    int
	}{
		{"101 reads in 50s", reads("ent-1", 101, 500*time.Millisecond), 1},
		{"100 reads in 50s", reads("ent-1", 100, 500*time.Millisecond), 0},
		{"101 reads over 101s", reads("ent-1", 101, 1010*time.Millisecond), 0},
		{"2 callers of 60", append(reads("ent-1", 60, 100*time.Millisecond), reads("ent-2", 60, 100*time.Millisecond)...), 0},
	}
	var lists []entry // lists and history views are not secret reads
	for i := 0; i < 150; i++ {
		lists = append(lists, entry{Path: "api-keys/t1/", Op: "list", Entity: "ent-1", Time: at(time.Duration(i) * 100 * time.Millisecond)},
			entry{Path: "api-keys/t1/k/history", Entity: "ent-1", Time: at(time.Duration(i) * 100 * time.Millisecond)})
	}
	cases = append(cases, struct {
		name    string
		entries []entry
		want    int
	}{"150 lists and history reads", lists, 0})
	for _, tc := range cases {
		c, _ := process(t, Options{}, logOf(tc.entries...))
		if got := c.alertsOf(RuleBulkReads); len(got) != tc.want {
			t.Errorf("%s: %d alerts, want %d", tc.name, len(got), tc.want)
		} else if tc.want > 0 && !strings.Contains(got[0].Detail, "101 secret reads by entity ent-1") {
			t.Errorf("%s: detail %q", tc.name, got[0].Detail)
		}
	}
}

func TestRuleOffHours(t *testing.T) {
	day := time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		at   time.Duration
		op   string
		path string
		want bool
	}{
		{23 * time.Hour, "read", "smtp/t1/mail", true},
		{22 * time.Hour, "read", "smtp/t1/mail", true},
		{5*time.Hour + 59*time.Minute, "read", "smtp/t1/mail", true},
		{6 * time.Hour, "read", "smtp/t1/mail", false},
		{21*time.Hour + 59*time.Minute, "read", "smtp/t1/mail", false},
		{12 * time.Hour, "read", "smtp/t1/mail", false},
		{23 * time.Hour, "update", "ssh/t1/vps/private", true}, // an export is a read
		{23 * time.Hour, "list", "smtp/t1/", false},
		{23 * time.Hour, "update", "smtp/t1/mail", false},
	}
	for _, tc := range cases {
		c, _ := process(t, Options{}, logOf(entry{Path: tc.path, Op: tc.op, Time: day.Add(tc.at)}))
		if got := len(c.alertsOf(RuleOffHours)) == 1; got != tc.want {
			t.Errorf("%s %s at %s: alert %v, want %v", tc.op, tc.path, tc.at, got, tc.want)
		}
	}
	// A window that does not wrap midnight, and "off".
	cfg := DefaultRuleConfig()
	var err error
	if cfg.OffHours, err = ParseOffHours("02:00-06:00"); err != nil {
		t.Fatal(err)
	}
	c, _ := process(t, Options{Rules: cfg}, logOf(entry{Path: "smtp/t1/m", Time: day.Add(23 * time.Hour)}, entry{Path: "smtp/t1/m", Time: day.Add(3 * time.Hour)}))
	if got := c.alertsOf(RuleOffHours); len(got) != 1 || got[0].Record.Timestamp.Hour() != 3 {
		t.Errorf("02:00-06:00: %d alerts", len(got))
	}
	cfg.OffHours, _ = ParseOffHours("off")
	c, _ = process(t, Options{Rules: cfg}, logOf(entry{Path: "smtp/t1/m", Time: day.Add(3 * time.Hour)}))
	if len(c.alertsOf(RuleOffHours)) != 0 {
		t.Errorf("off: alert raised")
	}
}

func TestParseOffHoursRefusesBadWindows(t *testing.T) {
	for _, s := range []string{"22-06", "22:00", "25:00-06:00", "22:60-06:00", "aa:bb-06:00", "06:00-06:00"} {
		if _, err := ParseOffHours(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
	o, err := ParseOffHours("22:30-06:15")
	if err != nil || o.String() != "22:30-06:15" {
		t.Errorf("22:30-06:15: %v %v", o, err)
	}
}

func TestRulePrivateKeyExportAndDeletion(t *testing.T) {
	log := logOf(
		entry{Path: "ssh/t1/vps/private", Op: "update"},
		entry{Path: "dkim/t1/example.com/private", Op: "update", Error: denied},
		entry{Path: "ssh/t1/vps"},                                // public view: no export
		entry{Path: "dkim/t1/example.com/sign", Op: "update"},    // signing: no export
		entry{Path: "config/providers/private", Op: "update"},    // a provider named "private"
		entry{Path: "smtp/t1/mail", Op: "delete"},                // deletion
		entry{Path: "config/providers/mailu", Op: "delete"},      // deletion
		entry{Path: "ssh/t1/vps/revoke", Op: "update"},           // not a deletion
		entry{Path: "smtp/t1/mail", Op: "delete", Error: denied}, // a refused deletion is still flagged
	)
	c, _ := process(t, Options{}, log)
	exports := c.alertsOf(RulePrivateExport)
	if len(exports) != 2 || exports[0].Record.Path != "penguinmails/ssh/t1/vps/private" || !strings.Contains(exports[1].Detail, "error") {
		t.Errorf("exports: %+v", exports)
	}
	if got := c.alertsOf(RuleDeletion); len(got) != 3 {
		t.Errorf("%d deletion alerts, want 3", len(got))
	}
}

func TestRuleRotationWithoutIncident(t *testing.T) {
	warning := []string{"no incident_id given: the rotations are recorded as manual and flagged no_incident in each secret's history", "the job runs in the background"}
	background := []string{"the job runs in the background; follow it at rotate/jobs/x"}
	cases := []struct {
		name string
		e    entry
		want bool
	}{
		{"bulk, warned", entry{Path: "rotate/bulk", Op: "update", Warnings: warning}, true},
		{"tenant, warned", entry{Path: "rotate-tenant/t1", Op: "update", Warnings: warning}, true},
		{"bulk with an id (HMAC'd request data)", entry{Path: "rotate/bulk", Op: "update", Warnings: background,
			Data: map[string]any{"incident_id": "hmac-sha256:0e36"}}, false},
		{"refused bulk, no id", entry{Path: "rotate/bulk", Op: "update", Error: denied, Data: map[string]any{"types": "hmac-sha256:04"}}, true},
		{"refused bulk, plain empty id", entry{Path: "rotate/bulk", Op: "update", Error: denied, Data: map[string]any{"incident_id": " "}}, true},
		{"refused bulk, plain id", entry{Path: "rotate/bulk", Op: "update", Error: denied, Data: map[string]any{"incident_id": "INC-7"}}, false},
		{"refused bulk, HMAC'd id", entry{Path: "rotate/bulk", Op: "update", Error: denied, Data: map[string]any{"incident_id": "hmac-sha256:ab"}}, false},
		{"unanswered tenant rotation, no id", entry{Type: "request", Path: "rotate-tenant/t1", Op: "update"}, true},
		{"single-secret rotation", entry{Path: "smtp/t1/mail/rotate", Op: "update"}, false},
		{"job read", entry{Path: "rotate/jobs/abc"}, false},
	}
	for _, tc := range cases {
		c, _ := process(t, Options{}, logOf(tc.e))
		if got := len(c.alertsOf(RuleNoIncident)) == 1; got != tc.want {
			t.Errorf("%s: alert %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRuleCrossTenant(t *testing.T) {
	c, _ := process(t, Options{}, logOf(
		entry{Path: "smtp/t2/mail", Tenant: "t1", Error: denied},
		entry{Path: "smtp/t1/mail", Tenant: "t1"},
		entry{Path: "smtp/t2/mail"}, // no tenant metadata: staff or service
		entry{Path: "rotation/status", Tenant: "t1"},
	))
	got := c.alertsOf(RuleCrossTenant)
	if len(got) != 1 || got[0].Record.PathTenant != "t2" || got[0].Record.TenantID != "t1" {
		t.Fatalf("cross-tenant alerts: %+v", got)
	}
}

func TestRulesCanBeDisabled(t *testing.T) {
	log := logOf(entry{Path: "smtp/t1/mail", Op: "delete"}, entry{Path: "ssh/t1/vps/private", Op: "update"})
	cfg := DefaultRuleConfig()
	var err error
	if cfg.Enabled, err = ParseRules("deletion"); err != nil {
		t.Fatal(err)
	}
	c, _ := process(t, Options{Rules: cfg}, log)
	if len(c.alerts) != 1 || c.alerts[0].Rule != RuleDeletion {
		t.Fatalf("only deletion enabled: %+v", c.alerts)
	}
	cfg.Enabled, _ = ParseRules("none")
	if c, _ = process(t, Options{Rules: cfg}, log); len(c.alerts) != 0 || len(c.records) != 2 {
		t.Fatalf("none: %d alerts %d records", len(c.alerts), len(c.records))
	}
	if _, err := ParseRules("deletion,typo"); err == nil || !strings.Contains(err.Error(), `"typo"`) {
		t.Fatalf("unknown rule: %v", err)
	}
}

func TestWindowCounterMemoryIsBounded(t *testing.T) {
	c := newWindowCounter(101, time.Minute, 1000)
	// 50,000 callers, one read each, all within one minute: the bound holds.
	for i := 0; i < 50000; i++ {
		c.observe(fmt.Sprintf("caller-%d", i), at(time.Duration(i)*time.Millisecond))
	}
	if len(c.keys) > 1000 || c.Evicted == 0 {
		t.Fatalf("%d keys, %d evicted; want at most 1000", len(c.keys), c.Evicted)
	}
	// Idle keys go without counting as forced evictions.
	// (They are swept every evictEveryNObserved events.)
	c = newWindowCounter(5, time.Minute, 10000)
	for i := 0; i < 20000; i++ {
		c.observe(fmt.Sprintf("src-%d", i), at(time.Duration(i)*time.Second))
	}
	if len(c.keys) > evictEveryNObserved+61 || c.Evicted != 0 {
		t.Fatalf("%d keys, %d forced evictions; want the keys since the last sweep and none forced", len(c.keys), c.Evicted)
	}
}
