package dnscheck

import (
	"fmt"
	"strings"
)

// wsp is the whitespace RFC 6376 3.2 allows around tags and values (WSP and
// the CR LF of folding white space).
const wsp = " \t\r\n"

// NormalizeDKIM parses a DKIM tag-list (RFC 6376 3.2), as published in a key
// record (RFC 6376 3.6.1), into tag -> value and the tags in the order they
// appear. Whitespace around tag names and values is dropped, a trailing
// empty tag (a final ";") is ignored, and all whitespace is removed from p=,
// whose base64 may be folded (RFC 6376 3.6.1). Tag names stay as written:
// they compare case-sensitively. An empty tag in the middle, a tag without
// "=", an invalid tag name or a repeated tag makes the whole list invalid, and
// so does a list with no tag at all.
func NormalizeDKIM(value string) (map[string]string, []string, error) {
	specs := strings.Split(value, ";")
	if strings.Trim(specs[len(specs)-1], wsp) == "" {
		specs = specs[:len(specs)-1]
	}
	if len(specs) == 0 {
		return nil, nil, fmt.Errorf("empty tag-list")
	}
	tags := make(map[string]string, len(specs))
	order := make([]string, 0, len(specs))
	for i, spec := range specs {
		name, val, err := parseTagSpec(spec)
		if err != nil {
			return nil, nil, fmt.Errorf("tag %d: %w", i+1, err)
		}
		if _, dup := tags[name]; dup {
			return nil, nil, fmt.Errorf("tag %s appears twice", name)
		}
		tags[name] = val
		order = append(order, name)
	}
	return tags, order, nil
}

// parseTagSpec splits one tag-spec, [FWS] tag-name [FWS] "=" [FWS] tag-value
// [FWS], and checks the name is ALPHA *ALNUMPUNC (RFC 6376 3.2).
func parseTagSpec(spec string) (string, string, error) {
	name, val, ok := strings.Cut(spec, "=")
	if !ok {
		if strings.Trim(spec, wsp) == "" {
			return "", "", fmt.Errorf("empty tag")
		}
		return "", "", fmt.Errorf("no \"=\" in %q", clip(strings.Trim(spec, wsp), 20))
	}
	name = strings.Trim(name, wsp)
	if !validTagName(name) {
		return "", "", fmt.Errorf("%q is not a tag name", clip(name, 20))
	}
	val = strings.Trim(val, wsp)
	if name == "p" {
		val = removeSpace(val)
	}
	return name, val, nil
}

func validTagName(name string) bool {
	if name == "" || !isAlpha(name[0]) {
		return false
	}
	for i := 1; i < len(name); i++ {
		c := name[i]
		if !isAlpha(c) && !isDigit(c) && c != '_' {
			return false
		}
	}
	return true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func removeSpace(s string) string {
	return strings.Map(func(r rune) rune {
		if strings.ContainsRune(wsp, r) {
			return -1
		}
		return r
	}, s)
}

// clip shortens s to at most n bytes for messages.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// diffTags names how got differs from want, tag by tag in want's order and
// then the tags only got has. Key data is never quoted: p= is reported as
// "p differs", so that a diff stays short. Returns "" when they are equal.
func diffTags(got map[string]string, want map[string]string, wantOrder, gotOrder []string) string {
	var diffs []string
	for _, name := range wantOrder {
		g, ok := got[name]
		switch {
		case !ok:
			diffs = append(diffs, "no "+name+"=")
		case g == want[name]:
		case name == "p":
			diffs = append(diffs, "p differs")
		default:
			diffs = append(diffs, fmt.Sprintf("%s=%s, want %s=%s", name, clip(g, 24), name, clip(want[name], 24)))
		}
	}
	for _, name := range gotOrder {
		if _, ok := want[name]; !ok {
			diffs = append(diffs, "unexpected "+name+"=")
		}
	}
	return strings.Join(diffs, "; ")
}
