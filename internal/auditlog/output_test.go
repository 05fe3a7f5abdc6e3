package auditlog

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func filterLog() []byte {
	return logOf(
		entry{Path: "smtp/t1/mail", Time: at(0)},
		entry{Path: "ssh/t1/vps", Op: "create", Time: at(time.Minute)},
		entry{Path: "smtp/t2/mail", Op: "delete", Time: at(2 * time.Minute)},
		entry{Path: "smtp/t2/mail", Tenant: "t3", Error: denied, Time: at(3 * time.Minute)},
		entry{Path: "api-keys/t2/k", Time: at(4 * time.Minute)},
	)
}

func TestFilters(t *testing.T) {
	cases := []struct {
		name  string
		f     Filter
		paths string // the request paths kept, below the mount
	}{
		{"none", Filter{}, "smtp/t1/mail ssh/t1/vps smtp/t2/mail smtp/t2/mail api-keys/t2/k"},
		{"tenant t1", Filter{Tenant: "t1"}, "smtp/t1/mail ssh/t1/vps"},
		{"tenant t2 (path or caller)", Filter{Tenant: "t2"}, "smtp/t2/mail smtp/t2/mail api-keys/t2/k"},
		{"tenant t3 (caller)", Filter{Tenant: "t3"}, "smtp/t2/mail"},
		{"type smtp", Filter{SecretType: "smtp"}, "smtp/t1/mail smtp/t2/mail smtp/t2/mail"},
		{"operation delete", Filter{Operation: "delete"}, "smtp/t2/mail"},
		{"since", Filter{Since: at(3 * time.Minute)}, "smtp/t2/mail api-keys/t2/k"},
		{"until (exclusive)", Filter{Until: at(time.Minute)}, "smtp/t1/mail"},
		{"range and type", Filter{Since: at(time.Minute), Until: at(4 * time.Minute), SecretType: "smtp"}, "smtp/t2/mail smtp/t2/mail"},
	}
	for _, tc := range cases {
		c, _ := process(t, Options{Filter: tc.f}, filterLog())
		var got []string
		for _, r := range c.records {
			got = append(got, strings.TrimPrefix(r.Path, DefaultMount))
		}
		if strings.Join(got, " ") != tc.paths {
			t.Errorf("%s: %v, want %s", tc.name, got, tc.paths)
		}
	}
}

func TestAlertsFollowTheFilters(t *testing.T) {
	// The deletion (t2) alerts under --tenant t2, not under --tenant t1.
	c, _ := process(t, Options{Filter: Filter{Tenant: "t1"}}, filterLog())
	if len(c.alertsOf(RuleDeletion)) != 0 {
		t.Fatal("t2's deletion alerted under tenant t1")
	}
	c, _ = process(t, Options{Filter: Filter{Tenant: "t2"}, AlertsOnly: true}, filterLog())
	if len(c.records) != 0 || len(c.alertsOf(RuleDeletion)) != 1 || len(c.alertsOf(RuleCrossTenant)) != 1 {
		t.Fatalf("alerts-only t2: %d records, alerts %+v", len(c.records), c.alerts)
	}
	// A failure burst spread over tenants is seen by the rule, and reported
	// with the filtered tenant's record that completed it.
	var burst []entry
	for i := 0; i < 5; i++ {
		tenant := "t1"
		if i == 4 {
			tenant = "t2"
		}
		burst = append(burst, entry{Path: "smtp/" + tenant + "/m", IP: "10.9.9.9", Error: denied, Time: at(time.Duration(i) * time.Second)})
	}
	c, _ = process(t, Options{Filter: Filter{Tenant: "t2"}}, logOf(burst...))
	if len(c.alertsOf(RuleFailedRequests)) != 1 {
		t.Fatalf("burst ending on t2, filtered on t2: %+v", c.alerts)
	}
}

func writeWith(t *testing.T, newSink func(*bytes.Buffer) interface {
	Sink
	Flush() error
}, log []byte) string {
	t.Helper()
	var out bytes.Buffer
	s := newSink(&out)
	p := NewProcessor(Options{Rules: DefaultRuleConfig()}, s)
	if err := p.Read(bytes.NewReader(log)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestJSONOutput(t *testing.T) {
	log := logOf(entry{Path: "smtp/t1/mail", Display: "approle-worker-email-sender", IP: "10.0.1.50", Time: at(0)},
		entry{Path: "smtp/t1/mail", Op: "delete", Error: denied, Time: at(time.Second)})
	out := writeWith(t, func(b *bytes.Buffer) interface {
		Sink
		Flush() error
	} {
		return NewJSONWriter(b)
	}, log)
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 3 {
		t.Fatalf("%d lines, want record, record, alert:\n%s", len(lines), out)
	}
	want := map[string]any{"type": "access", "timestamp": "2026-03-02T12:00:00Z", "operation": "read",
		"path": "penguinmails/smtp/t1/mail", "accessor": "approle-worker-email-sender", "tenant_id": "t1",
		"source_ip": "10.0.1.50", "secret_type": "smtp", "status": "success"}
	for k, v := range want {
		if lines[0][k] != v {
			t.Errorf("%s = %v, want %v", k, lines[0][k], v)
		}
	}
	if _, ok := lines[0]["error"]; ok {
		t.Error("a success carries an error field")
	}
	if lines[1]["status"] != "error" || lines[1]["error"] != denied {
		t.Errorf("failed delete: %v", lines[1])
	}
	if lines[2]["type"] != "alert" || lines[2]["rule"] != RuleDeletion || lines[2]["severity"] != "medium" || lines[2]["path"] != "penguinmails/smtp/t1/mail" {
		t.Errorf("alert: %v", lines[2])
	}
}

func TestCSVOutput(t *testing.T) {
	log := logOf(entry{Path: "smtp/t1/mail", Display: "=HYPERLINK(\"x\")", Time: at(0)},
		entry{Path: "ssh/t1/vps/private", Op: "update", Time: at(time.Second)})
	out := writeWith(t, func(b *bytes.Buffer) interface {
		Sink
		Flush() error
	} {
		return NewCSVWriter(b)
	}, log)
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 4 || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("rows %v", rows)
	}
	col := func(row []string, name string) string {
		for i, h := range CSVHeader {
			if h == name {
				return row[i]
			}
		}
		t.Fatalf("no column %s", name)
		return ""
	}
	if col(rows[1], "type") != "access" || col(rows[1], "tenant_id") != "t1" || col(rows[1], "secret_type") != "smtp" ||
		col(rows[1], "timestamp") != "2026-03-02T12:00:00Z" || col(rows[1], "rule") != "" {
		t.Errorf("record row %v", rows[1])
	}
	if col(rows[1], "accessor") != `'=HYPERLINK("x")` {
		t.Errorf("formula not defused: %q", col(rows[1], "accessor"))
	}
	if col(rows[3], "type") != "alert" || col(rows[3], "rule") != RulePrivateExport || col(rows[3], "path") != "penguinmails/ssh/t1/vps/private" {
		t.Errorf("alert row %v", rows[3])
	}
	// An empty report still has its header.
	empty := writeWith(t, func(b *bytes.Buffer) interface {
		Sink
		Flush() error
	} {
		return NewCSVWriter(b)
	}, nil)
	if strings.TrimSpace(empty) != strings.Join(CSVHeader, ",") {
		t.Errorf("empty CSV: %q", empty)
	}
}
