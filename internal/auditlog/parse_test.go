package auditlog

import (
	"bytes"
	"compress/gzip"
	"os"
	"strings"
	"testing"
	"time"
)

// The testdata logs were written by a real Vault 1.21.0 (file audit device)
// with the plugin mounted, for: create, read, a read of a missing secret, two
// writes refused for an unknown field, a rotation, a DKIM create, rotate/bulk
// without and with incident_id, rotate-tenant without, a list, a delete, a
// read denied to a token of tenant-2, an SSH create and its private export.
// The second device lists incident_id in audit_non_hmac_request_keys.
func realLog(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRealVaultLogRecords(t *testing.T) {
	for _, name := range []string{"vault-1.21.0-audit.log", "vault-1.21.0-audit-nonhmac-incident.log"} {
		t.Run(name, func(t *testing.T) {
			c, p := process(t, Options{}, realLog(t, name))
			if p.Stats.Malformed != 0 || p.Stats.Unanswered != 0 {
				t.Fatalf("malformed %d, unanswered %d; want 0, 0", p.Stats.Malformed, p.Stats.Unanswered)
			}
			// sys/ and auth/ entries are not of the mount; each request of the
			// mount gives one record (from its response entry).
			if len(c.records) != 15 {
				t.Fatalf("%d records, want 15", len(c.records))
			}
			first := c.records[0]
			want := Record{Operation: "create", Path: "penguinmails/smtp/tenant-1/mail-1", Accessor: "token",
				TenantID: "tenant-1", SourceIP: "127.0.0.1", SecretType: "smtp", Status: StatusSuccess}
			if first.Operation != want.Operation || first.Path != want.Path || first.Accessor != want.Accessor ||
				first.TenantID != want.TenantID || first.SourceIP != want.SourceIP || first.SecretType != want.SecretType ||
				first.Status != want.Status || !strings.HasPrefix(first.TokenAccessor, "hmac-sha256:") {
				t.Fatalf("first record %+v, want %+v", *first, want)
			}
			if first.Timestamp.Format(time.RFC3339Nano) != "2026-12-01T05:54:22.972988688Z" {
				t.Fatalf("timestamp %s", first.Timestamp.Format(time.RFC3339Nano))
			}
			refused := findRecord(t, c, func(r *Record) bool { return r.Path == "penguinmails/ssh/tenant-1/vps" && r.Status == StatusError })
			if !strings.HasPrefix(refused.Error, `unknown field(s) "algorithm"`) || refused.TokenAccessor == "" {
				t.Fatalf("refused write: error %q, token accessor %q; want the request entry's error and the token accessor", refused.Error, refused.TokenAccessor)
			}
			denied := findRecord(t, c, func(r *Record) bool { return strings.Contains(r.Error, "permission denied") })
			if denied.TenantID != "tenant-2" || denied.PathTenant != "tenant-1" || denied.Accessor != "token-tenant2" {
				t.Fatalf("denied read %+v: want caller tenant-2 on tenant-1's path", *denied)
			}
			counts := map[string]int{}
			for _, a := range c.alerts {
				counts[a.Rule]++
			}
			wantAlerts := map[string]int{RuleNoIncident: 2, RuleDeletion: 1, RulePrivateExport: 1, RuleCrossTenant: 1,
				RuleOffHours: 4} // the log was written at 05:54 UTC
			for rule, n := range wantAlerts {
				if counts[rule] != n {
					t.Errorf("%s: %d alerts, want %d (all: %v)", rule, counts[rule], n, counts)
				}
			}
			for _, a := range c.alertsOf(RuleNoIncident) {
				if a.Record.RequestID == "ce240309-a119-3d76-0a9d-33a594713f91" {
					t.Errorf("rotate/bulk with incident_id=INC-1 flagged")
				}
			}
		})
	}
}

func findRecord(t *testing.T, c *collector, match func(*Record) bool) *Record {
	t.Helper()
	for _, r := range c.records {
		if match(r) {
			return r
		}
	}
	t.Fatal("no matching record")
	return nil
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func jsonOutput(t *testing.T, log []byte) string {
	t.Helper()
	var out bytes.Buffer
	w := NewJSONWriter(&out)
	p := NewProcessor(Options{Rules: DefaultRuleConfig()}, w)
	if err := p.Read(bytes.NewReader(log)); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestGzipIsDetectedByContent(t *testing.T) {
	plain := realLog(t, "vault-1.21.0-audit.log")
	want := jsonOutput(t, plain)
	if strings.Count(want, "\n") < 15 {
		t.Fatalf("plain log gave %q", want)
	}
	if got := jsonOutput(t, gzipped(t, plain)); got != want {
		t.Fatalf("gzipped log gave another output:\n%s\nwant\n%s", got, want)
	}
	// Two gzip members back to back (cat a.gz b.gz) read as one stream.
	half := bytes.Index(plain, []byte("\n")) + 1
	members := append(gzipped(t, plain[:half]), gzipped(t, plain[half:])...)
	if got := jsonOutput(t, members); got != want {
		t.Fatalf("concatenated gzip members gave another output")
	}
	// A corrupt gzip stream is an error, not a silent empty report.
	p := NewProcessor(Options{}, &collector{})
	if err := p.Read(bytes.NewReader(gzipped(t, plain)[:200])); err == nil {
		t.Fatal("truncated gzip: no error")
	}
}

func TestMalformedLinesAreSkippedAndCounted(t *testing.T) {
	good := entry{Path: "smtp/t1/mail", Time: at(0)}.line()
	log := bytes.Join([][]byte{
		good,
		[]byte(`{"time":"2026-03-02T12:00:00Z","type":"response","request":{"path":"penguinmails/smtp/t1/x"`), // cut off
		[]byte(`not json at all, but it names "penguinmails/smtp/t1/x`),
		[]byte(`{"time":"yesterday","type":"response","request":{"id":"x","path":"penguinmails/smtp/t1/x"}}`),
		[]byte(`{"type":"response","request":{"id":"x","path":"penguinmails/smtp/t1/x"}}`),         // no time
		[]byte(`{"time":"2026-03-02T12:00:00Z","type":"request","request":{"path":"sys/health"}}`), // another path: not counted
		[]byte(""), // empty lines are not malformed
		[]byte("garbage of another mount"),
		[]byte(strings.Repeat("x", 5000) + `"penguinmails/`), // longer than MaxLine
		entry{Path: "smtp/t1/mail", Time: at(time.Second)}.line(),
	}, []byte("\n"))
	// No newline at the end: the last line still counts.
	c, p := process(t, Options{MaxLine: 4096}, log)
	if len(c.records) != 2 {
		t.Fatalf("%d records, want the 2 good ones", len(c.records))
	}
	if p.Stats.Malformed != 5 {
		t.Fatalf("malformed = %d, want 5 (cut, not JSON, bad time, no time, too long)", p.Stats.Malformed)
	}
	if p.Stats.Lines.Load() != 9 || p.Stats.Bytes.Load() != int64(len(log)) {
		t.Fatalf("lines %d bytes %d, want 9 lines (the too-long one skipped whole) and %d bytes", p.Stats.Lines.Load(), p.Stats.Bytes.Load(), len(log))
	}
}

func TestLongLinesWithinMaxAreRead(t *testing.T) {
	// 600 KB lines, beyond the reader's 256 KB buffer but within MaxLine.
	log := logOf(entry{Path: "smtp/t1/a", ExtraRespKB: 600}, entry{Path: "smtp/t1/b", ExtraRespKB: 600})
	c, p := process(t, Options{}, log)
	if len(c.records) != 2 || p.Stats.Malformed != 0 || c.records[1].Path != "penguinmails/smtp/t1/b" {
		t.Fatalf("records %d malformed %d", len(c.records), p.Stats.Malformed)
	}
}

func TestOnlyTheMountIsKept(t *testing.T) {
	log := logOf(
		entry{Path: "smtp/t1/a"},
		entry{Mount: "penguinmails-old/", Path: "smtp/t1/a"},
		entry{Mount: "secret/", Path: "penguinmails/smtp/t1/a"},
		entry{Mount: "sys/", Path: "mounts/penguinmails/tune", Op: "update"},
		entry{Mount: "other/", Path: "ssh/t2/b"},
	)
	c, p := process(t, Options{}, log)
	if len(c.records) != 1 || c.records[0].Path != "penguinmails/smtp/t1/a" || p.Stats.MountEntries != 1 {
		t.Fatalf("default mount: %d records, %d entries", len(c.records), p.Stats.MountEntries)
	}
	c, _ = process(t, Options{Mount: "/other"}, log)
	if len(c.records) != 1 || c.records[0].Path != "other/ssh/t2/b" || c.records[0].TenantID != "t2" || c.records[0].SecretType != "ssh" {
		t.Fatalf("--mount /other: %+v", c.records)
	}
}

func TestPathFields(t *testing.T) {
	cases := []struct {
		path, secretType, tenant string
	}{
		{"smtp/t1/mail", "smtp", "t1"},
		{"api-keys/t1/stripe", "api-keys", "t1"},
		{"dkim/t1/example.com/private", "dkim", "t1"},
		{"oauth/t1/", "oauth", "t1"},
		{"ssh/", "ssh", ""},
		{"config/providers/mailu", "config", ""},
		{"rotate/bulk", "rotate", ""},
		{"rotate-tenant/t9", "rotate-tenant", "t9"},
		{"rotation/status", "rotation", ""},
		{"dkim-domains/example.com", "dkim-domains", ""},
		{"newtype/t3/x", "newtype", "t3"},
	}
	for _, tc := range cases {
		c, _ := process(t, Options{}, logOf(entry{Path: tc.path, Op: "list"}))
		r := c.records[0]
		if r.SecretType != tc.secretType || r.TenantID != tc.tenant {
			t.Errorf("%s: type %q tenant %q, want %q %q", tc.path, r.SecretType, r.TenantID, tc.secretType, tc.tenant)
		}
	}
	// The caller's tenant_id metadata wins; the path's tenant shows apart.
	c, _ := process(t, Options{}, logOf(entry{Path: "smtp/t1/mail", Tenant: "t1"}, entry{Path: "smtp/t1/mail", Tenant: "t2"}))
	if c.records[0].TenantID != "t1" || c.records[0].PathTenant != "" || c.records[1].TenantID != "t2" || c.records[1].PathTenant != "t1" {
		t.Fatalf("tenants: %+v %+v", *c.records[0], *c.records[1])
	}
}

func TestRequestEntriesWaitForTheirResponse(t *testing.T) {
	log := logOf(
		entry{Type: "request", ID: "a", Path: "smtp/t1/a", Time: at(0)},
		entry{Type: "response", ID: "a", Path: "smtp/t1/a", Time: at(time.Millisecond)},
		entry{Type: "request", ID: "lost", Path: "smtp/t1/lost", Time: at(time.Second)},
		entry{Type: "request", ID: "b", Path: "smtp/t1/b", Time: at(2 * time.Second)},
		entry{Type: "response", ID: "b", Path: "smtp/t1/b", Time: at(3 * time.Second), Error: "1 error occurred:\n\t* permission denied\n\n"},
		entry{Type: "request", ID: "end", Path: "smtp/t1/end", Time: at(4 * time.Second)},
	)
	c, p := process(t, Options{}, log)
	var got []string
	for _, r := range c.records {
		got = append(got, r.RequestID+":"+r.Status)
	}
	want := "a:success b:error lost:no_response end:no_response"
	if strings.Join(got, " ") != want || p.Stats.Unanswered != 2 {
		t.Fatalf("records %v (unanswered %d), want %s", got, p.Stats.Unanswered, want)
	}
}

func TestUnansweredRequestsAreReportedAfterTheWait(t *testing.T) {
	var entries []entry
	entries = append(entries, entry{Type: "request", ID: "lost", Path: "smtp/t1/lost", Time: at(0)})
	// More than sweepEveryNLines lines, over more than the wait.
	for i := 0; i < sweepEveryNLines+10; i++ {
		entries = append(entries, entry{Path: "smtp/t1/x", Time: at(time.Duration(i) * 100 * time.Millisecond)})
	}
	c, p := process(t, Options{ResponseWait: time.Minute}, logOf(entries...))
	idx := -1
	for i, r := range c.records {
		if r.RequestID == "lost" {
			idx = i
		}
	}
	if idx < 0 || idx == len(c.records)-1 || c.records[idx].Status != StatusNoResponse {
		t.Fatalf("lost request at %d of %d: want reported at the sweep, before the end", idx, len(c.records))
	}
	if len(p.pending) != 0 {
		t.Fatalf("%d pending after Close", len(p.pending))
	}
	// MaxPending bounds what waits.
	entries = entries[:0]
	for i := 0; i < 50; i++ {
		entries = append(entries, entry{Type: "request", Path: "smtp/t1/x", Time: at(time.Duration(i) * time.Millisecond)})
	}
	c = &collector{}
	p = NewProcessor(Options{MaxPending: 10}, c)
	if err := p.Read(bytes.NewReader(logOf(entries...))); err != nil {
		t.Fatal(err)
	}
	if len(p.pending) > 10 || len(c.records) < 40 {
		t.Fatalf("%d pending, %d reported; want at most 10 pending", len(p.pending), len(c.records))
	}
}
