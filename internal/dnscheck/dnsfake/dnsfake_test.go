package dnsfake

import (
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func newServer(t *testing.T) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// ask sends one TXT query over network, optionally advertising an EDNS0
// buffer, and fails the test on a transport error.
func ask(t *testing.T, s *Server, network, name string, edns uint16) *dns.Msg {
	t.Helper()
	resp, err := query(s, network, name, edns, 2*time.Second)
	if err != nil {
		t.Fatalf("%s query for %s: %v", network, name, err)
	}
	return resp
}

func query(s *Server, network, name string, edns uint16, timeout time.Duration) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeTXT)
	if edns > 0 {
		m.SetEdns0(edns, false)
	}
	c := &dns.Client{Net: network, Timeout: timeout}
	resp, _, err := c.Exchange(m, s.Addr())
	return resp, err
}

func TestLongValueIsSplitInto255ByteStrings(t *testing.T) {
	s := newServer(t)
	value := strings.Repeat("a", 255) + strings.Repeat("b", 255) + "c"
	s.SetTXT("long.example", value)

	resp := ask(t, s, "udp", "long.example", 4096)
	if len(resp.Answer) != 1 {
		t.Fatalf("answer = %v, want one TXT", resp.Answer)
	}
	txt := resp.Answer[0].(*dns.TXT).Txt
	if len(txt) != 3 || len(txt[0]) != 255 || len(txt[1]) != 255 || txt[2] != "c" {
		t.Fatalf("character-strings have lengths %d, want 255,255,1", lens(txt))
	}
	if strings.Join(txt, "") != value {
		t.Fatal("joined strings differ from the value set")
	}
}

func lens(ss []string) []int {
	var out []int
	for _, s := range ss {
		out = append(out, len(s))
	}
	return out
}

func TestBackslashSurvivesTheWire(t *testing.T) {
	s := newServer(t)
	s.SetTXT("esc.example", `a\b"c`)
	txt := ask(t, s, "udp", "esc.example", 0).Answer[0].(*dns.TXT).Txt
	// miekg/dns presents unpacked TXT data escaped (RFC 1035 5.1).
	if len(txt) != 1 || txt[0] != `a\\b\"c` {
		t.Fatalf("txt = %q", txt)
	}
}

func TestNamesAreCaseInsensitive(t *testing.T) {
	s := newServer(t)
	s.SetTXT("Sel._DomainKey.Example.COM", "v=DKIM1; p=")
	resp := ask(t, s, "udp", "sel._domainkey.example.com.", 0)
	if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("rcode %d answer %v", resp.Rcode, resp.Answer)
	}
	if got := s.Queries("SEL._domainkey.example.com"); got != 1 {
		t.Fatalf("Queries = %d, want 1", got)
	}
}

func TestCNAMEAndTargetComeInOneAnswer(t *testing.T) {
	s := newServer(t)
	s.SetCNAME("s1._domainkey.customer.com", "s1.customer-com.dkim.platform.example")
	s.SetTXT("s1.customer-com.dkim.platform.example", "v=DKIM1; p=abc")

	resp := ask(t, s, "udp", "s1._domainkey.customer.com", 0)
	if len(resp.Answer) != 2 {
		t.Fatalf("answer = %v, want CNAME then TXT", resp.Answer)
	}
	cname, ok := resp.Answer[0].(*dns.CNAME)
	if !ok || cname.Target != "s1.customer-com.dkim.platform.example." {
		t.Fatalf("first record = %v", resp.Answer[0])
	}
	txt, ok := resp.Answer[1].(*dns.TXT)
	if !ok || txt.Hdr.Name != "s1.customer-com.dkim.platform.example." {
		t.Fatalf("second record = %v", resp.Answer[1])
	}
}

func TestNotRecursiveReturnsTheAliasAlone(t *testing.T) {
	s := newServer(t)
	s.SetCNAME("a.example", "b.example")
	s.SetTXT("b.example", "x")
	s.Recursive(false)
	resp := ask(t, s, "udp", "a.example", 0)
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Rrtype != dns.TypeCNAME {
		t.Fatalf("answer = %v, want the CNAME only", resp.Answer)
	}
}

func TestUnknownDeletedAndHiddenNamesAreNXDOMAIN(t *testing.T) {
	s := newServer(t)
	s.SetTXT("kept.example", "x")
	s.SetTXT("gone.example", "x")
	s.Delete("gone.example")
	s.Hide("kept.example", true)
	for _, name := range []string{"never.example", "gone.example", "kept.example"} {
		if rc := ask(t, s, "udp", name, 0).Rcode; rc != dns.RcodeNameError {
			t.Errorf("%s: rcode %s, want NXDOMAIN", name, dns.RcodeToString[rc])
		}
	}
	s.Hide("kept.example", false)
	if resp := ask(t, s, "udp", "kept.example", 0); resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Fatalf("shown again: rcode %d answer %v", resp.Rcode, resp.Answer)
	}
}

func TestBigAnswerIsTruncatedOverUDPAndWholeOverTCP(t *testing.T) {
	s := newServer(t)
	value := strings.Repeat("k", 1500)
	s.SetTXT("big.example", value)

	udp := ask(t, s, "udp", "big.example", 0)
	if !udp.Truncated || len(udp.Answer) != 0 {
		t.Fatalf("UDP without EDNS0: truncated=%v answers=%d, want TC and no answer", udp.Truncated, len(udp.Answer))
	}
	tcp := ask(t, s, "tcp", "big.example", 0)
	if tcp.Truncated || len(tcp.Answer) != 1 || strings.Join(tcp.Answer[0].(*dns.TXT).Txt, "") != value {
		t.Fatalf("TCP: truncated=%v answer=%d records", tcp.Truncated, len(tcp.Answer))
	}
	if got := s.Queries("big.example"); got != 2 {
		t.Fatalf("Queries = %d, want 2", got)
	}
}

func TestServFail(t *testing.T) {
	s := newServer(t)
	s.SetTXT("x.example", "x")
	s.ServFail(true)
	if rc := ask(t, s, "udp", "x.example", 0).Rcode; rc != dns.RcodeServerFailure {
		t.Fatalf("rcode %s, want SERVFAIL", dns.RcodeToString[rc])
	}
	s.ServFail(false)
	if rc := ask(t, s, "udp", "x.example", 0).Rcode; rc != dns.RcodeSuccess {
		t.Fatalf("after ServFail(false): rcode %s", dns.RcodeToString[rc])
	}
}

func TestSilenceNeverAnswersButCounts(t *testing.T) {
	s := newServer(t)
	s.SetTXT("x.example", "x")
	s.Silence(true)
	if _, err := query(s, "udp", "x.example", 0, 200*time.Millisecond); err == nil {
		t.Fatal("silenced server answered")
	}
	if got := s.Queries("x.example"); got != 1 {
		t.Fatalf("Queries = %d, want 1", got)
	}
	s.Silence(false)
	ask(t, s, "udp", "x.example", 0)
}
