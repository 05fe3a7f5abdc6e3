package dnscheck

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

const (
	sel     = "s1._domainkey.customer.com"
	keyA    = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAwantedkey"
	keyB    = "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAotherkey"
	wantRec = "v=DKIM1; k=rsa; p=" + keyA
)

// checkOne runs CheckAll against one fake holding records at sel.
func checkOne(t *testing.T, want string, records ...string) ResolverResult {
	t.Helper()
	s := newFake(t)
	s.SetTXT(sel, records...)
	res := CheckAll(context.Background(), []Resolver{resolverOf(s)}, sel, want, 1)
	if len(res.PerResolver) != 1 || res.PerResolver[0].Addr != s.Addr() {
		t.Fatalf("per resolver = %+v", res.PerResolver)
	}
	return res.PerResolver[0]
}

func TestCheckPublishedAfterNormalising(t *testing.T) {
	for _, record := range []string{
		wantRec,
		"k=rsa;v=DKIM1;p=" + keyA + ";", // order, spacing, trailing ";"
		"  v = DKIM1 ;\tk=rsa ; p=" + keyA[:20] + " " + keyA[20:] + " \r\n", // whitespace in and around p=
	} {
		if got := checkOne(t, wantRec, record); got.Status != StatusPublished {
			t.Errorf("record %q: %+v, want published", record, got)
		}
	}
}

func TestCheckMissing(t *testing.T) {
	s := newFake(t)
	s.SetTXT("nodata.customer.com") // exists, no TXT value
	rs := []Resolver{resolverOf(s)}
	for _, name := range []string{"nxdomain.customer.com", "nodata.customer.com"} {
		res := CheckAll(context.Background(), rs, name, wantRec, 1)
		if got := res.PerResolver[0]; got.Status != StatusMissing || res.OK {
			t.Errorf("%s: %+v ok=%v, want missing", name, got, res.OK)
		}
	}
}

func TestCheckMismatchDiffs(t *testing.T) {
	cases := map[string]struct{ record, diff string }{
		"other key":       {"v=DKIM1; k=rsa; p=" + keyB, "p differs"},
		"other algorithm": {"v=DKIM1; k=ed25519; p=" + keyA, "k=ed25519, want k=rsa"},
		"tag missing":     {"v=DKIM1; p=" + keyA, "no k="},
		"extra tag":       {wantRec + "; t=y", "unexpected t="},
		"tag name case":   {"V=DKIM1; k=rsa; p=" + keyA, "no v=; unexpected V="},
		"not a tag-list":  {"hello world", "not a DKIM tag-list"},
		"two records":     {"", "2 TXT records, want 1 (1 match)"},
	}
	for name, c := range cases {
		records := []string{c.record}
		if name == "two records" {
			records = []string{wantRec, "v=DKIM1; p=" + keyB}
		}
		got := checkOne(t, wantRec, records...)
		if got.Status != StatusMismatch || !strings.Contains(got.Diff, c.diff) {
			t.Errorf("%s: %+v, want mismatch with %q", name, got, c.diff)
		}
		if strings.Contains(got.Diff, keyA) || strings.Contains(got.Diff, keyB) {
			t.Errorf("%s: diff quotes key data: %q", name, got.Diff)
		}
	}
}

func TestCheckDiffIsBounded(t *testing.T) {
	var record []string
	for _, tag := range strings.Split("abcdefghijklmnopqrstuvwxyz", "") {
		record = append(record, tag+"="+strings.Repeat("é", 20))
	}
	got := checkOne(t, wantRec, strings.Join(record, "; "))
	if got.Status != StatusMismatch || len(got.Diff) > maxDiff || !strings.HasSuffix(got.Diff, "…") {
		t.Fatalf("diff of %d bytes: %q", len(got.Diff), got.Diff)
	}
	if !strings.HasPrefix(got.Diff, "v=éé") || !utf8.ValidString(got.Diff) {
		t.Fatalf("diff lost its start: %q", got.Diff)
	}
}

func TestCheckRevoked(t *testing.T) {
	if got := checkOne(t, wantRec, "v=DKIM1; k=rsa; p="); got.Status != StatusRevoked {
		t.Fatalf("%+v, want revoked", got)
	}
	// Publishing a revocation is itself a record that can be published.
	if got := checkOne(t, "v=DKIM1; k=rsa; p=", "v=DKIM1; k=rsa; p= "); got.Status != StatusPublished {
		t.Fatalf("%+v, want the revocation published", got)
	}
}

func TestCheckErrorOnServFail(t *testing.T) {
	s := newFake(t)
	s.SetTXT(sel, wantRec)
	s.ServFail(true)
	res := CheckAll(context.Background(), []Resolver{resolverOf(s)}, sel, wantRec, 0)
	if got := res.PerResolver[0]; got.Status != StatusError || !strings.Contains(got.Err, "SERVFAIL") || res.OK {
		t.Fatalf("%+v ok=%v", got, res.OK)
	}
}

func TestCheckFollowsADelegatedSelector(t *testing.T) {
	s := newFake(t)
	s.SetCNAME(sel, "s1.customer-com.dkim.platform.example")
	s.SetTXT("s1.customer-com.dkim.platform.example", wantRec)
	res := CheckAll(context.Background(), []Resolver{resolverOf(s)}, sel, wantRec, 1)
	if got := res.PerResolver[0]; got.Status != StatusPublished || !res.OK {
		t.Fatalf("%+v", res)
	}
	s.Delete("s1.customer-com.dkim.platform.example") // alias left dangling
	res = CheckAll(context.Background(), []Resolver{resolverOf(s)}, sel, wantRec, 1)
	if got := res.PerResolver[0]; got.Status != StatusMissing {
		t.Fatalf("dangling alias: %+v", got)
	}
}

func TestCheckLongRecordIsJoined(t *testing.T) {
	longKey := strings.Repeat("QUJD", 150) // 600 bytes of base64: three character-strings
	want := "v=DKIM1; k=rsa; p=" + longKey
	if got := checkOne(t, want, want); got.Status != StatusPublished {
		t.Fatalf("%+v", got)
	}
}

func TestCheckQuorum(t *testing.T) {
	var rs []Resolver
	for i := range 3 {
		s := newFake(t)
		if i < 2 {
			s.SetTXT(sel, wantRec)
		}
		rs = append(rs, resolverOf(s))
	}
	cases := []struct {
		quorum, applied int
		ok              bool
	}{{2, 2, true}, {3, 3, false}, {0, 3, false}, {1, 1, true}}
	for _, c := range cases {
		res := CheckAll(context.Background(), rs, sel, wantRec, c.quorum)
		if res.Published != 2 || res.Quorum != c.applied || res.OK != c.ok {
			t.Errorf("quorum %d: published=%d quorum=%d ok=%v", c.quorum, res.Published, res.Quorum, res.OK)
		}
		statuses := []Status{res.PerResolver[0].Status, res.PerResolver[1].Status, res.PerResolver[2].Status}
		if !reflect.DeepEqual(statuses, []Status{StatusPublished, StatusPublished, StatusMissing}) {
			t.Errorf("statuses = %v, want in resolver order", statuses)
		}
	}
}

func TestCheckNoResolversIsNotOK(t *testing.T) {
	if res := CheckAll(context.Background(), nil, sel, wantRec, 0); res.OK {
		t.Fatalf("%+v", res)
	}
}

// Silent resolvers are waited for concurrently: the check takes one timeout,
// not one per resolver, and the answering resolver is not held up by them.
func TestCheckSilentResolversCostOneTimeout(t *testing.T) {
	const timeout = 300 * time.Millisecond
	good := newFake(t)
	good.SetTXT(sel, wantRec)
	rs := []Resolver{resolverOf(good)}
	for range 3 {
		s := newFake(t)
		s.Silence(true)
		rs = append(rs, Resolver{Addr: s.Addr(), Timeout: timeout})
	}
	start := time.Now()
	res := CheckAll(context.Background(), rs, sel, wantRec, 1)
	took := time.Since(start)

	if took < timeout || took >= 2*timeout {
		t.Fatalf("CheckAll took %v, want one %v timeout (3 silent resolvers)", took, timeout)
	}
	if got := res.PerResolver[0]; got.Status != StatusPublished || got.Elapsed >= timeout {
		t.Fatalf("answering resolver: %+v, want published well before the timeout", got)
	}
	for _, got := range res.PerResolver[1:] {
		if got.Status != StatusError || !strings.Contains(got.Err, "no answer") {
			t.Fatalf("silent resolver: %+v", got)
		}
	}
	if !res.OK || res.Published != 1 {
		t.Fatalf("%+v", res)
	}
}

func TestCheckStopsWhenTheContextIsCancelled(t *testing.T) {
	s := newFake(t)
	s.Silence(true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	res := CheckAll(ctx, []Resolver{{Addr: s.Addr(), Timeout: 10 * time.Second}}, sel, wantRec, 1)
	if got := res.PerResolver[0]; got.Status != StatusError || !strings.Contains(got.Err, "context canceled") {
		t.Fatalf("%+v", got)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v with a cancelled context", took)
	}
}

func TestNormalizeDKIM(t *testing.T) {
	tags, order, err := NormalizeDKIM(" v=DKIM1 ; k = rsa;p=AB\tC D ;")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(tags, map[string]string{"v": "DKIM1", "k": "rsa", "p": "ABCD"}) ||
		!reflect.DeepEqual(order, []string{"v", "k", "p"}) {
		t.Fatalf("tags %q order %q", tags, order)
	}
	for _, bad := range []string{"v=DKIM1;;p=x", "v=DKIM1; p", "p=a; p=b", "1v=x", "v x=1", ""} {
		if _, _, err := NormalizeDKIM(bad); err == nil {
			t.Errorf("NormalizeDKIM(%q) accepted", bad)
		}
	}
}
