package dkimkey

import (
	"strings"
	"testing"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

func TestCanonicalDomain(t *testing.T) {
	for in, want := range map[string]string{
		"example.com":                   "example.com",
		"EXAMPLE.com":                   "example.com",
		"example.com.":                  "example.com",
		"\uff42\uff41\uff4e\uff4b.com":  "bank.com",
		"bank\u3002com":                 "bank.com",
		"b\u00fccher.example":           "xn--bcher-kva.example",
		"XN--BCHER-KVA.example":         "xn--bcher-kva.example",
		"xn--bcher-kva.example":         "xn--bcher-kva.example",
		"a-b.c-d.example":               "a-b.c-d.example",
		strings.Repeat("a", 63) + ".io": strings.Repeat("a", 63) + ".io",
	} {
		got, err := CanonicalDomain(in)
		if err != nil || got != want {
			t.Errorf("CanonicalDomain(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestCanonicalDomainRefuses(t *testing.T) {
	long63 := strings.Repeat("a", 63)
	for in, mention := range map[string]string{
		"":                               "required",
		"localhost":                      "two labels",
		"exa mple.com":                   "exa mple",
		"exa_mple.com":                   "exa_mple",
		"-example.com":                   "hyphen",
		"example..com":                   "label",
		"example.com..":                  "label",
		strings.Repeat("a", 64) + ".com": "63",
		strings.Join([]string{long63, long63, long63, strings.Repeat("a", 62)}, "."): "253",
		"xn--zz.com":      "punycode",
		"a\u200db.com":    "punycode",
		"x;d=evil.com":    "domain",
		"a.b/c":           "domain",
		"example.com\x00": "domain",
	} {
		_, err := CanonicalDomain(in)
		if _, ok := inputerr.As(err); !ok || !strings.Contains(err.Error(), mention) || !strings.Contains(err.Error(), "domain") {
			t.Errorf("CanonicalDomain(%q): %v; want an input error mentioning %q", in, err, mention)
		}
	}
}

func TestCheckSelector(t *testing.T) {
	if err := CheckSelector("selector", "mail-1"); err != nil {
		t.Fatal(err)
	}
	for in, mention := range map[string]string{
		"MAIL1":                 `use "mail1"`,
		" mail1 ":               `use "mail1"`,
		"a.b":                   "one DNS label",
		"a_b":                   "one DNS label",
		"-a":                    "one DNS label",
		"":                      "one DNS label",
		strings.Repeat("s", 64): "one DNS label",
	} {
		err := CheckSelector("selector", in)
		if _, ok := inputerr.As(err); !ok || !strings.Contains(err.Error(), mention) || !strings.Contains(err.Error(), "selector") {
			t.Errorf("CheckSelector(%q): %v; want an input error mentioning %q", in, err, mention)
		}
	}
	if err := CheckSelectorPrefix("PM"); err == nil || !strings.Contains(err.Error(), `use "pm"`) {
		t.Errorf("CheckSelectorPrefix(PM): %v", err)
	}
	if err := CheckSelectorPrefix(strings.Repeat("p", MaxSelectorPrefix+1)); err == nil {
		t.Error("a prefix over the bound is accepted")
	}
}

func TestCheckHeaders(t *testing.T) {
	got, err := CheckHeaders([]string{" From ", "X-a!#$%&'*+-.^_`|~9"})
	if err != nil || got[0] != "From" {
		t.Fatalf("%v %v", got, err)
	}
	for name, in := range map[string][]string{
		"tag injection": {"From", "Subject;d=evil.example;s=x"},
		"equals":        {"From", "a=b"},
		"colon":         {"From", "x:y"},
		"space inside":  {"From", "X Y"},
		"non-ASCII":     {"From", "Sübject"},
		"empty":         {"From", ""},
		"too long":      {"From", strings.Repeat("x", MaxHeaderName+1)},
		"too many":      append([]string{"From"}, make([]string, MaxHeaders)...),
		"no From":       {"To"},
	} {
		if _, err := CheckHeaders(in); err == nil || !strings.Contains(err.Error(), "headers") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRecordsAndTXT(t *testing.T) {
	if got := RecordName("s1", "example.com"); got != "s1._domainkey.example.com" {
		t.Fatal(got)
	}
	if TXTValue("ed25519", "AAA") != "v=DKIM1; k=ed25519; p=AAA" || TXTValue("rsa-2048", "B") != "v=DKIM1; k=rsa; p=B" {
		t.Fatal("TXTValue")
	}
	v := strings.Repeat("x", 600)
	parts := SplitTXT(v)
	if len(parts) != 3 || len(parts[0]) != 255 || strings.Join(parts, "") != v {
		t.Fatalf("SplitTXT: %d parts", len(parts))
	}
	if got := SplitTXT(RevokedTXTValue); len(got) != 1 || got[0] != "v=DKIM1; p=" {
		t.Fatal(got)
	}
}
