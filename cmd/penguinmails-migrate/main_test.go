package main

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
)

func TestFlagsDefaultToADryRunOfTheDocumentedPaths(t *testing.T) {
	opt, err := parseFlags(nil, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if opt.Apply || opt.AllVersions || opt.SourceMount != "secret" || opt.SourcePrefix != "penguinmails" || opt.EngineMount != "penguinmails" {
		t.Fatalf("defaults %+v", opt)
	}
	opt, err = parseFlags([]string{"-apply", "-all-versions", "-source-mount", "/kv/", "-mount", "pm/"}, &bytes.Buffer{})
	if err != nil || !opt.Apply || !opt.AllVersions || opt.SourceMount != "kv" || opt.EngineMount != "pm" {
		t.Fatalf("flags %+v, %v", opt, err)
	}
	for _, args := range [][]string{{"-mount", "/"}, {"extra"}, {"-bogus"}} {
		if _, err := parseFlags(args, &bytes.Buffer{}); err == nil {
			t.Errorf("%v accepted", args)
		}
	}
}

func TestShortKeepsStatusAndMessagesOnOneLine(t *testing.T) {
	err := fmt.Errorf("wrapped: %w", &api.ResponseError{StatusCode: 400, Errors: []string{"invalid private_key:\n  not PEM"}, URL: "http://x/v1/penguinmails/dkim/t/d"})
	if got := short(err).Error(); got != "400: invalid private_key: not PEM" {
		t.Fatalf("got %q", got)
	}
	plain := errors.New("dial tcp: refused")
	if short(plain) != plain || short(nil) != nil {
		t.Fatal("other errors must pass unchanged")
	}
}

// internal/tty's tests prove a pipe or a file takes no progress line.
func TestBadFlagIsUsage(t *testing.T) {
	var buf bytes.Buffer
	if code := run([]string{"-bogus"}, &buf, &buf); code != 2 || !strings.Contains(buf.String(), "usage") {
		t.Fatalf("bad flag: exit %d, %q", code, buf.String())
	}
}
