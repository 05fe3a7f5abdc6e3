package dkimkey

import (
	"crypto/ed25519"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

// Run one target for a while with: go test -fuzz FuzzCanonicalDomain ./internal/dkimkey/
// Without -fuzz, `go test` runs the seeds below as unit tests.

var canonicalDomainRe = regexp.MustCompile(`^[a-z0-9.-]+$`)

// refusedAsInput fails unless err is an *inputerr.Error: bad input is a 400,
// never an internal error.
func refusedAsInput(t *testing.T, what string, err error) {
	t.Helper()
	if _, ok := inputerr.As(err); !ok {
		t.Fatalf("%s refused with %T %v, want an *inputerr.Error", what, err, err)
	}
}

func FuzzCanonicalDomain(f *testing.F) {
	for _, s := range []string{
		"example.com", "EXAMPLE.com.", "\uff42\uff41\uff4e\uff4b.com", "bank\u3002com", "b\u00fccher.example",
		"xn--bcher-kva.example", "XN--BCHER-KVA.example", "xn--zz.com", "a\u200db.com", "", ".", "..", "a..b",
		"-a.com", "a-.com", "a.b.c.d.e.f", strings.Repeat("a", 63) + ".com", strings.Repeat("a.", 127) + "a",
		"xn--.com", "xn--a.com", "xn--ls8h.la", "\u00df.de", "\u0130.tr", "a_b.com", "x;d=evil.example",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		canon, err := CanonicalDomain(s)
		if err != nil {
			refusedAsInput(t, "CanonicalDomain", err)
			return
		}
		if len(canon) > MaxName || !canonicalDomainRe.MatchString(canon) {
			t.Fatalf("CanonicalDomain(%q) = %q: not at most %d characters of [a-z0-9.-]", s, canon, MaxName)
		}
		if strings.HasSuffix(canon, ".") || strings.Count(canon, ".") < 1 {
			t.Fatalf("CanonicalDomain(%q) = %q: a trailing dot or a single label", s, canon)
		}
		if again, err := CanonicalDomain(canon); err != nil || again != canon {
			t.Fatalf("CanonicalDomain(%q) = %q, but CanonicalDomain(%q) = %q, %v: not a fixed point", s, canon, canon, again, err)
		}
	})
}

func FuzzCheckSelector(f *testing.F) {
	for _, s := range []string{"mail1", "MAIL1", " mail1", "a.b", "a_b", "-a", "a-", "", strings.Repeat("s", 64), "pm202611-2", "\u212a"} {
		f.Add(s)
	}
	useRe := regexp.MustCompile(`; use "([^"]*)"$`)
	f.Fuzz(func(t *testing.T, s string) {
		err := CheckSelector("selector", s)
		if err == nil {
			if !isSelector(s) || strings.ToLower(s) != s {
				t.Fatalf("CheckSelector accepted %q", s)
			}
			return
		}
		refusedAsInput(t, "CheckSelector", err)
		if !strings.Contains(err.Error(), "selector") {
			t.Fatalf("message %q does not name the field", err)
		}
		// The spelling a refusal names is itself accepted.
		if m := useRe.FindStringSubmatch(err.Error()); m != nil {
			if err := CheckSelector("selector", m[1]); err != nil {
				t.Fatalf("the named spelling %q is refused: %v", m[1], err)
			}
		}
	})
}

// signatureTags are the tags go-msgauth writes; an injected tag would add
// one or repeat one.
var signatureTags = map[string]bool{"v": true, "a": true, "b": true, "bh": true, "c": true, "d": true, "h": true, "s": true, "t": true}

func FuzzSignInput(f *testing.F) {
	f.Add([]byte(testMessage), "", "relaxed/relaxed", uint8(0))
	f.Add([]byte(testMessage), "From,Subject;d=evil.example;s=x", "simple", uint8(3))
	f.Add([]byte(testMessage), "from,to,x-a!#$%&'*+-.^_`|~", "simple/relaxed", uint8(7))
	f.Add([]byte("From: a\n\nb"), "From", "RELAXED", uint8(1))
	f.Add([]byte("no header end"), "From", "loose/relaxed", uint8(0))
	f.Add([]byte{0xff, 0x00, '\r', '\n'}, "From,,", "relaxed/relaxed/relaxed", uint8(200))
	key := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize))
	f.Fuzz(func(t *testing.T, msg []byte, headers, canonicalization string, fold uint8) {
		encoded := base64.StdEncoding.EncodeToString(msg)
		if fold > 0 { // whitespace every fold characters, as mail tools wrap base64
			var b strings.Builder
			for i := 0; i < len(encoded); i += int(fold) {
				b.WriteString(encoded[i:min(i+int(fold), len(encoded))] + "\r\n\t ")
			}
			encoded = b.String()
		}
		size, err := MessageSize(encoded)
		if len(msg) == 0 {
			refusedAsInput(t, "MessageSize of nothing", err)
			return
		}
		if err != nil || size != len(msg) {
			t.Fatalf("MessageSize = %d, %v for %d bytes", size, err, len(msg))
		}
		var names []string
		if headers != "" {
			names = strings.Split(headers, ",")
		}
		opts, err := SignOptions(names, canonicalization)
		if err != nil {
			refusedAsInput(t, "SignOptions", err)
			return
		}
		opts.Domain, opts.Selector, opts.Signer = "example.com", "s1", key
		sig, err := Sign(encoded, opts)
		if err != nil {
			refusedAsInput(t, "Sign", err)
			return
		}
		checkSignatureTags(t, sig, opts.HeaderKeys)
	})
}

// checkSignatureTags parses the DKIM-Signature tag list: each known tag once,
// d= and s= as given, h= exactly the validated headers.
func checkSignatureTags(t *testing.T, sig string, headers []string) {
	t.Helper()
	value, ok := strings.CutPrefix(sig, "DKIM-Signature:")
	if !ok || !strings.HasSuffix(sig, "\r\n") {
		t.Fatalf("not a header field: %q", sig)
	}
	value = strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(value)
	seen := map[string]string{}
	for _, tag := range strings.Split(strings.TrimSuffix(value, ";"), ";") {
		k, v, _ := strings.Cut(tag, "=")
		if !signatureTags[k] || seen[k] != "" {
			t.Fatalf("tag %q unknown or repeated in %q", k, sig)
		}
		seen[k] = v + " "
	}
	if seen["d"] != "example.com " || seen["s"] != "s1 " || seen["h"] != strings.Join(headers, ":")+" " {
		t.Fatalf("d=%q s=%q h=%q in %q", seen["d"], seen["s"], seen["h"], sig)
	}
}
