package dnscheck

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Status is what one resolver shows for the record a caller expects.
type Status string

const (
	// StatusPublished: exactly one TXT record at the name, equal to the
	// expected one after DKIM normalisation.
	StatusPublished Status = "published"
	// StatusMissing: the name does not exist or has no TXT record.
	StatusMissing Status = "missing"
	// StatusMismatch: a different record, or more than one; Diff says how.
	StatusMismatch Status = "mismatch"
	// StatusRevoked: one DKIM record whose p= is empty, which marks a
	// revoked key (RFC 6376 3.6.1).
	StatusRevoked Status = "revoked"
	// StatusError: no usable answer (timeout, SERVFAIL, malformed); Err
	// says why.
	StatusError Status = "error"
)

// maxDiff bounds ResolverResult.Diff, in bytes.
const maxDiff = 200

// ResolverResult is one resolver's view of the name.
type ResolverResult struct {
	Addr    string        `json:"addr"`
	Status  Status        `json:"status"`
	Diff    string        `json:"diff,omitempty"`  // for StatusMismatch, at most 200 bytes
	Err     string        `json:"error,omitempty"` // for StatusError
	Elapsed time.Duration `json:"-"`               // how long this resolver took to settle
}

// Result is the view of all resolvers asked.
type Result struct {
	PerResolver []ResolverResult `json:"per_resolver"` // in the order the resolvers were given
	Published   int              `json:"published"`
	Quorum      int              `json:"quorum"` // the quorum applied: the one asked, or all resolvers for 0
	OK          bool             `json:"ok"`     // Published >= Quorum and at least one resolver was asked
}

// CheckAll asks every resolver concurrently for the TXT records at name and
// tells whether at least quorum of them (all of them when quorum is 0)
// publish want. Each resolver is bounded by its own Timeout, so one that
// never answers delays the result by its timeout only, not the others'.
//
// want is compared as a DKIM tag-list (see NormalizeDKIM): tag order,
// whitespace around tags and values, a trailing ";" and whitespace inside
// p= do not matter. If want is not a valid tag-list, records are compared
// as exact strings instead.
func CheckAll(ctx context.Context, resolvers []Resolver, name, want string, quorum int) Result {
	expected := newExpectation(want)
	res := Result{PerResolver: make([]ResolverResult, len(resolvers)), Quorum: quorum}
	if quorum <= 0 {
		res.Quorum = len(resolvers)
	}
	var wg sync.WaitGroup
	for i, r := range resolvers {
		wg.Go(func() {
			start := time.Now()
			ans, err := Lookup(ctx, r, name)
			rr := judge(ans, err, expected)
			rr.Addr, rr.Elapsed = r.Addr, time.Since(start)
			res.PerResolver[i] = rr
		})
	}
	wg.Wait()
	for _, rr := range res.PerResolver {
		if rr.Status == StatusPublished {
			res.Published++
		}
	}
	res.OK = len(resolvers) > 0 && res.Published >= res.Quorum
	return res
}

// expectation is the wanted record, parsed once.
type expectation struct {
	raw   string
	tags  map[string]string // nil when raw is not a tag-list
	order []string
}

func newExpectation(want string) expectation {
	tags, order, err := NormalizeDKIM(want)
	if err != nil {
		return expectation{raw: want}
	}
	return expectation{raw: want, tags: tags, order: order}
}

// judge turns one resolver's answer into its status.
func judge(ans Answer, err error, want expectation) ResolverResult {
	switch {
	case err != nil:
		return ResolverResult{Status: StatusError, Err: err.Error()}
	case len(ans.Records) == 0:
		return ResolverResult{Status: StatusMissing}
	case len(ans.Records) > 1:
		// RFC 6376 3.6.2.2 lets a verifier pick any of several key
		// records, so only a single record is a reliable publication.
		return ResolverResult{Status: StatusMismatch, Diff: multipleDiff(ans.Records, want)}
	}
	return judgeRecord(ans.Records[0], want)
}

func judgeRecord(record string, want expectation) ResolverResult {
	if want.tags == nil {
		if record == want.raw {
			return ResolverResult{Status: StatusPublished}
		}
		return ResolverResult{Status: StatusMismatch, Diff: "value differs"}
	}
	got, gotOrder, err := NormalizeDKIM(record)
	if err != nil {
		return ResolverResult{Status: StatusMismatch, Diff: limit("not a DKIM tag-list: " + err.Error())}
	}
	diff := diffTags(got, want.tags, want.order, gotOrder)
	if diff == "" {
		return ResolverResult{Status: StatusPublished}
	}
	if p, ok := got["p"]; ok && p == "" {
		return ResolverResult{Status: StatusRevoked}
	}
	return ResolverResult{Status: StatusMismatch, Diff: limit(diff)}
}

// multipleDiff says how many records there are and whether one of them is
// the wanted one, which tells an operator to delete the others.
func multipleDiff(records []string, want expectation) string {
	matching := 0
	for _, r := range records {
		if judgeRecord(r, want).Status == StatusPublished {
			matching++
		}
	}
	return fmt.Sprintf("%d TXT records, want 1 (%d match)", len(records), matching)
}

// limit cuts a diff to maxDiff bytes, without splitting a UTF-8 sequence.
func limit(s string) string {
	if len(s) <= maxDiff {
		return s
	}
	const ellipsis = "…"
	cut := maxDiff - len(ellipsis)
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return strings.TrimRight(s[:cut], " ;,") + ellipsis
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
