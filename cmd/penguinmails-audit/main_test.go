package main

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sample = "../../internal/auditlog/testdata/vault-1.21.0-audit.log"

func runCLI(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	cfg, err := parseFlags(args, &errOut)
	if err != nil {
		return 2, "", err.Error()
	}
	code = run(cfg, bytes.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestCLIReadsFilesAndStdin(t *testing.T) {
	plain, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	code, fromFile, summary := runCLI(t, nil, "--tenant", "tenant-1", "--type", "ssh", sample)
	if code != 0 || strings.Count(fromFile, `"type":"access"`) != 3 {
		t.Fatalf("exit %d, output:\n%s\n%s", code, fromFile, summary)
	}
	if !strings.Contains(summary, "30 entries of penguinmails/, 3 records printed") {
		t.Fatalf("summary %q", summary)
	}
	// The same log gzipped, through stdin, named "-".
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(plain)
	zw.Close()
	code, fromStdin, _ := runCLI(t, gz.Bytes(), "--tenant", "tenant-1", "--type", "ssh", "-")
	if code != 0 || fromStdin != fromFile {
		t.Fatalf("stdin gzip: exit %d, output differs:\n%s", code, fromStdin)
	}
	// Two files: the plain one and a .gz copy give twice the records.
	gzPath := filepath.Join(t.TempDir(), "audit.log.1.gz")
	if err := os.WriteFile(gzPath, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	code, both, _ := runCLI(t, nil, "--quiet", "--alerts-only", "--rules", "deletion", sample, gzPath)
	if code != 0 || strings.Count(both, `"rule":"deletion"`) != 2 || strings.Contains(both, `"type":"access"`) {
		t.Fatalf("two files, alerts only: exit %d\n%s", code, both)
	}
}

func TestCLICSVAndExitCodes(t *testing.T) {
	code, out, _ := runCLI(t, nil, "--format", "csv", "--operation", "delete", "--fail-on-alert", sample)
	if code != 3 {
		t.Fatalf("--fail-on-alert with a deletion: exit %d, want 3", code)
	}
	rows, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || len(rows) != 3 || rows[1][0] != "access" || rows[2][0] != "alert" {
		t.Fatalf("csv rows %v (%v)", rows, err)
	}
	if code, _, _ := runCLI(t, nil, "--quiet", "--fail-on-alert", "--rules", "none", sample); code != 0 {
		t.Fatalf("no rules, --fail-on-alert: exit %d", code)
	}
	for _, bad := range [][]string{
		{"--since", "yesterday"},
		{"--since", "2026-02-01T00:00:00Z", "--until", "2026-01-01T00:00:00Z"},
		{"--format", "xml"},
		{"--operation", "rotate"},
		{"--rules", "nope"},
		{"--off-hours", "22-6"},
		{"--fail-threshold", "0"},
		{"/no/such/file"},
	} {
		if code, _, msg := runCLI(t, nil, bad...); code != 2 || msg == "" {
			t.Errorf("%v: exit %d %q, want 2 and a message", bad, code, msg)
		}
	}
	// A corrupt gzip input is exit 1, with the input named.
	code, _, msg := runCLI(t, []byte{0x1f, 0x8b, 0, 0}, "--quiet", "-")
	if code != 1 || !strings.Contains(msg, "-:") {
		t.Fatalf("corrupt gzip: exit %d %q", code, msg)
	}
}
