package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFlagsNameWhatIsWrong(t *testing.T) {
	t.Setenv("VAULT_ADDR", "") // the default address, whatever the environment says
	for args, want := range map[string]string{
		"":              "-token-file is required",
		"-token-file t": "give -domains, -owner-lookup or both",
		"-token-file t -owner-lookup -on-failure maybe":          `-on-failure must be tempfail or accept, not "maybe"`,
		"-token-file t -owner-lookup -batch-max-items 1001":      "-batch-max-items must be 1 to 1000",
		"-token-file t -owner-lookup -max-requests 0":            "-max-requests must be at least 1",
		"-token-file t -owner-lookup -max-message-bytes 9000000": "at most -batch-max-bytes",
		// Refused at start, not by Vault for every message.
		"-token-file t -owner-lookup -vault-addr vault.internal:8200":        "-vault-addr (default $VAULT_ADDR): must be an absolute https URL",
		"-token-file t -owner-lookup -vault-addr http://vault.internal:8200": "http is accepted only for loopback addresses",
		"-token-file t -owner-lookup -vault-addr https://u:p@vault:8200":     "must not carry credentials",
		"-token-file t -owner-lookup -headers Subject,To":                    "-headers: invalid headers: From must be signed",
		"-token-file t -owner-lookup -headers From,X;Y":                      `-headers: invalid headers entry "X;Y"`,
		"-token-file t -owner-lookup -canonicalization relaxed/loose":        `-canonicalization: invalid canonicalization "relaxed/loose"`,
	} {
		_, err := parseFlags(strings.Fields(args), io.Discard)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", args, err, want)
		}
	}
	if _, err := parseFlags(strings.Fields("-token-file t -owner-lookup"), io.Discard); err != nil {
		t.Fatalf("minimal flags: %v", err)
	}
	good := "-token-file t -owner-lookup -headers From,Subject -canonicalization simple/relaxed -vault-addr https://vault.internal:8200"
	if _, err := parseFlags(strings.Fields(good), io.Discard); err != nil {
		t.Fatalf("%s: %v", good, err)
	}
}

func TestNewFilterReadsTheDomainsFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "domains")
	os.WriteFile(good, []byte("example.com tenant-1\n"), 0o644)
	cfg, err := parseFlags([]string{"-token-file", "t", "-domains", good}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	f, err := newFilter(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if tenant, _ := f.Resolver.Map.Tenant("example.com"); tenant != "tenant-1" || f.FailOpen {
		t.Fatalf("tenant %q, fail open %t", tenant, f.FailOpen)
	}

	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("example.com\n"), 0o644)
	cfg.domains = bad
	if _, err := newFilter(cfg); err == nil || !strings.Contains(err.Error(), "-domains "+bad+": line 1") {
		t.Fatalf("bad file: %v", err)
	}
}
