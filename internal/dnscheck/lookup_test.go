package dnscheck

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dnscheck/dnsfake"
)

func newFake(t *testing.T) *dnsfake.Server {
	t.Helper()
	s, err := dnsfake.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func resolverOf(s *dnsfake.Server) Resolver {
	return Resolver{Addr: s.Addr(), Timeout: 2 * time.Second}
}

func mustLookup(t *testing.T, r Resolver, name string) Answer {
	t.Helper()
	ans, err := Lookup(context.Background(), r, name)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", name, err)
	}
	return ans
}

func TestLookupJoinsCharacterStrings(t *testing.T) {
	s := newFake(t)
	value := "v=DKIM1; k=rsa; p=" + strings.Repeat("QUJD", 100) // 418 bytes: two strings
	s.SetTXT("sel._domainkey.example.com", value)

	ans := mustLookup(t, resolverOf(s), "sel._domainkey.example.com")
	if !reflect.DeepEqual(ans.Records, []string{value}) {
		t.Fatalf("records = %q", ans.Records)
	}
	if ans.NXDomain || ans.Rcode != 0 || len(ans.CNAMEs) != 0 {
		t.Fatalf("answer = %+v", ans)
	}
}

func TestLookupUnescapesTXTData(t *testing.T) {
	s := newFake(t)
	value := "a\\b\"c;\x01\xff"
	s.SetTXT("esc.example", value)
	ans := mustLookup(t, resolverOf(s), "esc.example")
	if !reflect.DeepEqual(ans.Records, []string{value}) {
		t.Fatalf("records = %q, want %q", ans.Records, value)
	}
}

func TestLookupFallsBackToTCPWhenTruncated(t *testing.T) {
	s := newFake(t)
	value := strings.Repeat("x", 3000) // beyond the 1232-byte EDNS0 buffer
	s.SetTXT("big.example", value)
	ans := mustLookup(t, resolverOf(s), "big.example")
	if len(ans.Records) != 1 || ans.Records[0] != value {
		t.Fatalf("got %d records", len(ans.Records))
	}
	if got := s.Queries("big.example"); got != 2 {
		t.Fatalf("queries = %d, want 2 (UDP then TCP)", got)
	}
}

func TestLookupNXDOMAINAndNoData(t *testing.T) {
	s := newFake(t)
	ans := mustLookup(t, resolverOf(s), "none.example")
	if !ans.NXDomain || ans.Rcode != 3 || len(ans.Records) != 0 {
		t.Fatalf("answer = %+v, want NXDOMAIN", ans)
	}
}

func TestLookupFollowsCNAMEChainInOneAnswer(t *testing.T) {
	s := newFake(t)
	s.SetCNAME("s1._domainkey.customer.com", "s1.customer-com.dkim.platform.example")
	s.SetTXT("s1.customer-com.dkim.platform.example", "v=DKIM1; p=abc")
	s.SetTXT("s1._domainkey.other.com", "v=DKIM1; p=other") // not on the chain

	ans := mustLookup(t, resolverOf(s), "S1._domainkey.Customer.com")
	if !reflect.DeepEqual(ans.Records, []string{"v=DKIM1; p=abc"}) {
		t.Fatalf("records = %q", ans.Records)
	}
	if !reflect.DeepEqual(ans.CNAMEs, []string{"s1.customer-com.dkim.platform.example."}) {
		t.Fatalf("cnames = %q", ans.CNAMEs)
	}
	if got := s.Queries("s1.customer-com.dkim.platform.example"); got != 0 {
		t.Fatalf("target asked %d times; the resolver's one answer should do", got)
	}
}

func TestLookupAsksForTheTargetOfAnAliasAnsweredAlone(t *testing.T) {
	s := newFake(t)
	s.Recursive(false)
	s.SetCNAME("a.example", "b.example")
	s.SetCNAME("b.example", "c.example")
	s.SetTXT("c.example", "found")

	ans := mustLookup(t, resolverOf(s), "a.example")
	if !reflect.DeepEqual(ans.Records, []string{"found"}) || !reflect.DeepEqual(ans.CNAMEs, []string{"b.example.", "c.example."}) {
		t.Fatalf("answer = %+v", ans)
	}
	if s.Queries("b.example") != 1 || s.Queries("c.example") != 1 {
		t.Fatalf("queries b=%d c=%d, want 1 each", s.Queries("b.example"), s.Queries("c.example"))
	}
}

func TestLookupStopsACNAMELoop(t *testing.T) {
	for _, recursive := range []bool{true, false} {
		s := newFake(t)
		s.Recursive(recursive)
		s.SetCNAME("a.example", "b.example")
		s.SetCNAME("b.example", "a.example")
		_, err := Lookup(context.Background(), resolverOf(s), "a.example")
		if err == nil || !strings.Contains(err.Error(), "longer than 8") {
			t.Fatalf("recursive=%v: err = %v, want a chain-length error", recursive, err)
		}
		if q := s.Queries("a.example") + s.Queries("b.example"); q > maxCNAMEHops+1 {
			t.Fatalf("recursive=%v: %d queries for a loop", recursive, q)
		}
	}
}

func TestLookupServFailIsAnError(t *testing.T) {
	s := newFake(t)
	s.ServFail(true)
	ans, err := Lookup(context.Background(), resolverOf(s), "x.example")
	if err == nil || !strings.Contains(err.Error(), "SERVFAIL") || ans.Rcode != 2 {
		t.Fatalf("ans %+v err %v", ans, err)
	}
}

func TestLookupTimesOutOnASilentResolver(t *testing.T) {
	s := newFake(t)
	s.Silence(true)
	start := time.Now()
	_, err := Lookup(context.Background(), Resolver{Addr: s.Addr(), Timeout: 200 * time.Millisecond}, "x.example")
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer") {
		t.Fatalf("err = %v", err)
	}
	if took < 200*time.Millisecond || took > time.Second {
		t.Fatalf("took %v, want about the 200ms timeout", took)
	}
}

func TestLookupStopsWhenTheContextIsCancelled(t *testing.T) {
	s := newFake(t)
	s.Silence(true)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the query has reached the server.
		for deadline := time.Now().Add(5 * time.Second); s.Queries("x.example") == 0 && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	start := time.Now()
	_, err := Lookup(ctx, Resolver{Addr: s.Addr(), Timeout: 10 * time.Second}, "x.example")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v after cancel", took)
	}
}

func TestLookupRejectsMalformedAnswers(t *testing.T) {
	replies := map[string]func(query []byte) []byte{
		"header only, claims an answer": func(q []byte) []byte {
			return []byte{q[0], q[1], 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0}
		},
		"question then a cut record": func(q []byte) []byte {
			r := append([]byte(nil), q...)
			r[2], r[3] = 0x81, 0x80
			r[7] = 1 // ANCOUNT 1
			return append(r, 0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60, 0, 50, 5, 'a')
		},
		"TXT string longer than its record": func(q []byte) []byte {
			r := append([]byte(nil), q...)
			r[2], r[3] = 0x81, 0x80
			r[7] = 1
			r[11] = 0 // drop the OPT record from ARCOUNT; it stays as trailing bytes
			return append(r[:len(q)-11], 0xc0, 0x0c, 0, 16, 0, 1, 0, 0, 0, 60, 0, 3, 200, 'a', 'b')
		},
	}
	for name, reply := range replies {
		t.Run(name, func(t *testing.T) {
			addr := rawServer(t, reply)
			_, err := Lookup(context.Background(), Resolver{Addr: addr, Timeout: 500 * time.Millisecond}, "x.example")
			if err == nil {
				t.Fatal("malformed answer accepted")
			}
			t.Log(err)
		})
	}
}

// rawServer answers every UDP datagram with reply(datagram).
func rawServer(t *testing.T, reply func([]byte) []byte) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if n >= 12 {
				pc.WriteTo(reply(buf[:n]), from)
			}
		}
	}()
	return pc.LocalAddr().String()
}

func TestLookupRejectsBadNames(t *testing.T) {
	for _, name := range []string{"", "a..b", strings.Repeat("x", 64) + ".example"} {
		if _, err := Lookup(context.Background(), Resolver{Addr: "127.0.0.1:1"}, name); err == nil {
			t.Errorf("Lookup(%q) accepted", name)
		}
	}
}
