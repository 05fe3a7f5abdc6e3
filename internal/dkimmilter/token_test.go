package dkimmilter

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeToken(t *testing.T, path, tok string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestTokenFileFollowsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	base := time.Unix(1_700_000_000, 0)
	writeToken(t, path, "hvs.first-token", base)
	f := &TokenFile{Path: path}
	if tok, err := f.Token(); tok != "hvs.first-token" || err != nil {
		t.Fatalf("first read: %q %v", tok, err)
	}

	// Agent writes a new token: a new mtime is noticed without a Reload.
	writeToken(t, path, "hvs.second-token", base.Add(time.Second))
	if tok, _ := f.Token(); tok != "hvs.second-token" {
		t.Fatalf("after a rewrite: %q", tok)
	}

	// Same size, same mtime (within the file system's resolution): only
	// Reload, which the client calls after a 403, sees it.
	writeToken(t, path, "hvs.second-tokeX", base.Add(time.Second))
	if tok, _ := f.Token(); tok != "hvs.second-token" {
		t.Fatalf("unchanged stat re-read the file: %q", tok)
	}
	if tok, _ := f.Reload(); tok != "hvs.second-tokeX" {
		t.Fatalf("Reload: %q", tok)
	}
}

func TestTokenFileErrorsNameNoToken(t *testing.T) {
	dir := t.TempDir()
	f := &TokenFile{Path: filepath.Join(dir, "missing")}
	if _, err := f.Token(); err == nil || !strings.Contains(err.Error(), "token file") {
		t.Fatalf("missing file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	writeToken(t, empty, "  ", time.Now())
	if _, err := (&TokenFile{Path: empty}).Token(); err == nil || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("empty file: %v", err)
	}
}
