package penguinmails

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
)

// This file holds the DKIM bookkeeping that needs the engine's types (the
// domain spelling rule, the selectors a secret has had); internal/dkimkey
// holds the key, record and input rules, path_dkim.go the paths.

// checkDKIMDomain is the DKIM kind's name rule: the domain in its one
// canonical spelling (dkimkey.CanonicalDomain). Another spelling of a valid
// domain would reach the same secret under a path that policies and audit
// rules do not expect, so it is refused naming the canonical path.
func checkDKIMDomain(tenant, name string) error {
	canon, err := dkimkey.CanonicalDomain(name)
	if err != nil {
		return err
	}
	if canon != name {
		return badInput("invalid domain %s: a domain has one spelling (lowercase, no trailing dot, Unicode as IDNA punycode); use dkim/%s/%s",
			quoteShort(name), tenant, canon)
	}
	return nil
}

const dkimDefaultSelectorPrefix = "pm"

// Bounds of the selectors a secret remembers. A selector must not come back
// while a resolver may still cache its old record or mail signed with its
// old key may still be checked: dkimSelectorQuarantine after its key left
// DNS (retired, revoked or expired) it may be given again. At most
// maxRememberedSelectors are kept; past that, those whose key left DNS
// longest ago are forgotten first. Generated selectors never repeat anyway:
// their number only counts up within a month (dkimSettings.SelectorSeq).
const (
	dkimSelectorQuarantine = 30 * day
	maxRememberedSelectors = 1000
)

// selectorUse is one selector the secret has had.
type selectorUse struct {
	Selector string `json:"selector"`
	// Ended is when its key left DNS; zero while it is published.
	Ended time.Time `json:"ended,omitempty"`
}

// dkimSettings apply to the whole secret.
type dkimSettings struct {
	// KeyType is the type of the current key and of the keys rotation makes.
	KeyType string `json:"key_type"`
	// Exportable false is for ever: such a key can sign but never be read.
	Exportable     bool   `json:"exportable"`
	SelectorPrefix string `json:"selector_prefix"`
	// Selectors are the selectors of the versions this secret has had, kept
	// or dropped, bounded as the constants above say.
	Selectors []selectorUse `json:"selectors,omitempty"`
	// LegacyUsed is the unbounded list of entries written before Selectors;
	// it is folded into Selectors on the next new version.
	LegacyUsed []string `json:"used_selectors,omitempty"`
	// SelectorBase and SelectorSeq are the last generated selector's
	// prefix+month and number (1 for pm202611, 2 for pm202611-2), so the
	// next one is found without scanning and a forgotten one never returns.
	SelectorBase string `json:"selector_base,omitempty"`
	SelectorSeq  int    `json:"selector_seq,omitempty"`
	// Activation is the secret's own activation mode (dns, delay,
	// immediate); empty follows config dkim_activation.
	Activation string `json:"activation,omitempty"`
	// DelegationZone is set for a delegated domain: its two stable
	// selectors are CNAMEs into this platform zone (dkim_delegation.go).
	DelegationZone string `json:"delegation_zone,omitempty"`
	// DualAlgorithm gives every version an Ed25519 key beside its RSA key.
	DualAlgorithm bool `json:"dual_algorithm,omitempty"`
}

// selectorTaken reports, in O(1) per candidate, whether a selector may not
// be given to a new key at now.
type selectorTaken map[string]time.Time

func (s dkimSettings) taken(e *secretEntry) selectorTaken {
	t := make(selectorTaken, len(s.Selectors)+len(s.LegacyUsed)+len(e.Versions))
	for _, sel := range s.LegacyUsed {
		t[sel] = time.Time{}
	}
	for _, u := range s.Selectors {
		t[u.Selector] = u.Ended
	}
	for i := range e.Versions {
		var m dkimMaterial
		if decodeMaterial(&e.Versions[i], &m) == nil {
			t[m.Selector] = time.Time{} // kept: never given again
		}
	}
	return t
}

func (t selectorTaken) at(selector string, now time.Time) bool {
	ended, ok := t[selector]
	return ok && (ended.IsZero() || now.Sub(ended) < dkimSelectorQuarantine)
}

// nextSelector is prefix + the month of now, then "-2", "-3", ...: it
// continues after the last generated number of that month, and skips any
// selector taken.
func nextSelector(s dkimSettings, now time.Time, taken selectorTaken) string {
	base := s.SelectorPrefix + now.UTC().Format("200601")
	n := 1
	if s.SelectorBase == base {
		n = s.SelectorSeq + 1
	}
	for ; ; n++ {
		if c := numberedSelector(base, n); !taken.at(c, now) {
			return c
		}
	}
}

func numberedSelector(base string, n int) string {
	if n == 1 {
		return base
	}
	return fmt.Sprintf("%s-%d", base, n)
}

// selectorNumber is n when selector is numberedSelector(base, n), else 0.
func selectorNumber(base, selector string) int {
	if selector == base {
		return 1
	}
	if rest, ok := strings.CutPrefix(selector, base+"-"); ok {
		if n, err := strconv.Atoi(rest); err == nil && n >= 2 && numberedSelector(base, n) == selector {
			return n
		}
	}
	return 0
}

// noteDKIMVersion is the onNewVersion hook: it records the new version's
// selector and when each remembered selector's key left DNS, and applies
// the bounds. It runs inside addVersion, so generate leaves e alone.
func noteDKIMVersion(e *secretEntry, v *secretVersion) error {
	s, err := dkimSettingsOf(e)
	if err != nil {
		return err
	}
	var m dkimMaterial
	if err := decodeMaterial(v, &m); err != nil {
		return err
	}
	now := v.CreatedTime
	base := s.SelectorPrefix + now.UTC().Format("200601")
	if n := selectorNumber(base, m.Selector); n > 0 {
		if s.SelectorBase != base {
			s.SelectorBase, s.SelectorSeq = base, 0
		}
		s.SelectorSeq = max(s.SelectorSeq, n)
	}
	s.Selectors = rememberSelectors(s, e, now)
	s.LegacyUsed = nil
	raw, err := json.Marshal(s)
	if err != nil {
		return err
	}
	e.Settings = raw
	return nil
}

// rememberSelectors returns the bounded selector list after a new version:
// kept versions' selectors with the time their key left DNS (zero while
// published), dropped ones with theirs, the quarantine's end pruned, then
// the longest gone first beyond maxRememberedSelectors.
func rememberSelectors(s dkimSettings, e *secretEntry, now time.Time) []selectorUse {
	uses := map[string]time.Time{}
	for _, sel := range s.LegacyUsed {
		uses[sel] = now // dropped before this list existed: when is unknown
	}
	for _, u := range s.Selectors {
		ended := u.Ended
		if ended.IsZero() {
			ended = now // published when last seen, dropped since
		}
		uses[u.Selector] = ended
	}
	for i := range e.Versions {
		v := &e.Versions[i]
		var m dkimMaterial
		if decodeMaterial(v, &m) == nil {
			uses[m.Selector] = keyEnded(v)
		}
	}
	out := make([]selectorUse, 0, len(uses))
	for sel, ended := range uses {
		if ended.IsZero() || now.Sub(ended) < dkimSelectorQuarantine {
			out = append(out, selectorUse{Selector: sel, Ended: ended})
		}
	}
	// Published first, then the most recently gone; ties by name, so the
	// stored order is stable.
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Ended.IsZero() != b.Ended.IsZero() {
			return a.Ended.IsZero()
		}
		if !a.Ended.Equal(b.Ended) {
			return a.Ended.After(b.Ended)
		}
		return a.Selector < b.Selector
	})
	if len(out) > maxRememberedSelectors {
		out = out[:maxRememberedSelectors]
	}
	return out
}

// keyEnded is when a version's key left DNS, or zero while it is published.
func keyEnded(v *secretVersion) time.Time {
	if v.Status == statusActive || v.Status == dkimStatusRetiring {
		return time.Time{}
	}
	return v.StatusTime
}
