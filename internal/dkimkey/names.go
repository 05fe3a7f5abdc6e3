package dkimkey

import (
	"fmt"
	"regexp"
	"strings"

	"golang.org/x/net/idna"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

// DNS limits (RFC 1035 2.3.4).
const (
	MaxLabel = 63
	MaxName  = 253
)

var labelRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// DomainRule is the rule of the domain segment, for messages and help.
const DomainRule = "must be a DNS domain name of at least two labels: lowercase letters, digits and hyphens " +
	"(no leading or trailing hyphen), each label at most 63 characters, the whole at most 253, no trailing dot; " +
	"a Unicode name is written as its IDNA punycode"

// CanonicalDomain returns the one spelling of a DKIM domain that the engine
// accepts: lowercase ASCII without a trailing dot, Unicode labels as IDNA
// punycode (UTS #46 lookup rules). The caller refuses any other spelling of
// the same name and names this one. A value that is no spelling of a valid
// domain is an input error naming the domain field. The result is a fixed
// point: CanonicalDomain of it returns it unchanged.
func CanonicalDomain(value string) (string, error) {
	if value == "" {
		return "", inputerr.New("domain is required: %s", DomainRule)
	}
	canon, err := canonicalDomain(value)
	if err != nil {
		return "", err
	}
	// A punycode label that decodes to a non-canonical Unicode label would
	// canonicalize once more; refuse such a name rather than give two
	// answers.
	if again, err := canonicalDomain(canon); err != nil || again != canon {
		return "", inputerr.New("invalid domain %s: its IDNA form is not stable under the UTS #46 lookup rules", inputerr.Quote(value))
	}
	return canon, nil
}

func canonicalDomain(value string) (string, error) {
	name := value
	if !isASCII(name) {
		ascii, err := idna.Lookup.ToASCII(name)
		if err != nil {
			return "", inputerr.New("invalid domain %s: the Unicode name cannot be converted to IDNA punycode (%v)",
				inputerr.Quote(value), err)
		}
		name = ascii
	}
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if len(name) > MaxName {
		return "", inputerr.New("invalid domain %s: %d characters, a domain name is at most %d", inputerr.Quote(value), len(name), MaxName)
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return "", inputerr.New("invalid domain %s: %s", inputerr.Quote(value), DomainRule)
	}
	for i, l := range labels {
		canon, err := canonicalLabel(value, l)
		if err != nil {
			return "", err
		}
		labels[i] = canon
	}
	return strings.Join(labels, "."), nil
}

// canonicalLabel checks one ASCII label; an A-label is returned as the
// lookup rules re-encode its Unicode form.
func canonicalLabel(value, label string) (string, error) {
	switch {
	case len(label) > MaxLabel:
		return "", inputerr.New("invalid domain %s: label %s is %d characters, a label is at most %d",
			inputerr.Quote(value), inputerr.Quote(label), len(label), MaxLabel)
	case !labelRe.MatchString(label):
		return "", inputerr.New("invalid domain %s: label %s must be 1-%d letters, digits or hyphens, not starting or ending with a hyphen",
			inputerr.Quote(value), inputerr.Quote(label), MaxLabel)
	case !strings.HasPrefix(label, "xn--"):
		return label, nil
	}
	u, err := idna.Lookup.ToUnicode(label)
	if err == nil {
		var a string
		if a, err = idna.Lookup.ToASCII(u); err == nil && labelRe.MatchString(a) && len(a) <= MaxLabel {
			return a, nil
		}
	}
	return "", inputerr.New("invalid domain %s: label %s is not valid IDNA punycode", inputerr.Quote(value), inputerr.Quote(label))
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// UnicodeDomain is the display form of a punycode domain, or "" when it has
// none (all-ASCII labels).
func UnicodeDomain(domain string) string {
	if !strings.Contains(domain, "xn--") {
		return ""
	}
	u, err := idna.Lookup.ToUnicode(domain)
	if err != nil {
		return ""
	}
	return u
}

// SelectorRule is the rule of a selector, for messages and help.
const SelectorRule = "must be one DNS label: 1-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen"

// CheckSelector accepts a selector in its one spelling. An uppercase or
// space-padded spelling of a valid selector is refused naming the right one.
func CheckSelector(field, value string) error {
	return checkCanonical(field, value, SelectorRule, isSelector)
}

func isSelector(s string) bool { return len(s) <= MaxLabel && labelRe.MatchString(s) }

// MaxSelectorPrefix bounds selector_prefix: a generated selector is prefix +
// YYYYMM (+ "-N"), and must stay one DNS label.
const MaxSelectorPrefix = 40

var prefixRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// SelectorPrefixRule is the rule of selector_prefix.
var SelectorPrefixRule = fmt.Sprintf("must be 1-%d lowercase letters, digits or hyphens, starting with a letter or digit", MaxSelectorPrefix)

// CheckSelectorPrefix accepts a selector_prefix in its one spelling.
func CheckSelectorPrefix(value string) error {
	return checkCanonical("selector_prefix", value, SelectorPrefixRule, func(s string) bool {
		return len(s) <= MaxSelectorPrefix && prefixRe.MatchString(s)
	})
}

// checkCanonical accepts value when valid; a value whose trimmed lowercase
// form is valid is refused naming that form.
func checkCanonical(field, value, rule string, valid func(string) bool) error {
	if valid(value) {
		return nil
	}
	if canon := strings.ToLower(strings.TrimSpace(value)); valid(canon) {
		return inputerr.New("invalid %s %s: %s; use %q", field, inputerr.Quote(value), rule, canon)
	}
	return inputerr.New("invalid %s %s: %s", field, inputerr.Quote(value), rule)
}
