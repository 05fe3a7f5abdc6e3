// Package dnscheck asks DNS resolvers what they return for a TXT name, and
// whether enough of them return the DKIM record a tenant was asked to
// publish. It queries the resolvers it is given directly (no system
// resolver, no cache) so that each one's view is reported separately.
package dnscheck

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DefaultTimeout bounds a Lookup when Resolver.Timeout is zero.
const DefaultTimeout = 2 * time.Second

// maxCNAMEHops is how many CNAMEs a Lookup follows before it gives up, as a
// stub resolver bounds alias chains to survive loops (RFC 1034 3.6.2).
const maxCNAMEHops = 8

// ednsUDPSize is the UDP payload size advertised with EDNS0 (RFC 6891 6.2.5);
// 1232 avoids IP fragmentation (DNS flag day 2020). Larger answers come back
// truncated and are asked again over TCP (RFC 1035 4.2.2, RFC 7766 5).
const ednsUDPSize = 1232

// Resolver is one recursive DNS resolver to ask.
type Resolver struct {
	Addr    string        // host:port
	Timeout time.Duration // bounds the whole Lookup, CNAME hops included; 0 means DefaultTimeout
}

func (r Resolver) timeout() time.Duration {
	if r.Timeout > 0 {
		return r.Timeout
	}
	return DefaultTimeout
}

// Answer is what a resolver returned for a TXT name.
type Answer struct {
	Records  []string // TXT values at the final name, each record's character-strings joined
	CNAMEs   []string // alias targets followed, in order, fully qualified and lower case
	Rcode    int      // RCODE of the last response (RFC 1035 4.1.1)
	NXDomain bool     // the final name does not exist
}

// Lookup asks r for the TXT records at name, with recursion desired, the way
// a stub resolver does: it follows a CNAME chain in the answer to its end and,
// when the resolver returns an alias without the target's records, asks for
// the target itself (at most maxCNAMEHops aliases). A SERVFAIL or other
// failing RCODE, a timeout and a malformed answer are errors; NXDOMAIN and an
// empty answer are not.
func Lookup(ctx context.Context, r Resolver, name string) (Answer, error) {
	qname := dns.CanonicalName(name)
	if _, ok := dns.IsDomainName(qname); !ok || name == "" {
		return Answer{}, fmt.Errorf("%q is not a DNS name", name)
	}
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, r.timeout())
	defer cancel()

	var ans Answer
	for {
		resp, err := exchange(ctx, r.Addr, qname)
		if err != nil {
			return ans, describe(parent, r, qname, err)
		}
		ans.Rcode = resp.Rcode
		if resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError {
			return ans, fmt.Errorf("resolver %s answered %s for %s", r.Addr, rcodeName(resp.Rcode), qname)
		}
		final, records, err := followChain(resp.Answer, qname, &ans.CNAMEs)
		if err != nil {
			return ans, err
		}
		ans.NXDomain = resp.Rcode == dns.RcodeNameError
		ans.Records = records
		if final == qname || ans.NXDomain || len(records) > 0 {
			return ans, nil
		}
		// The resolver returned an alias but not its target's records:
		// ask for the target (RFC 1034 5.3.3 step 3).
		qname = final
	}
}

// exchange sends one query for TXT at qname over UDP and, when the answer is
// truncated, again over TCP. Cancelling ctx closes the socket, so a resolver
// that never answers does not hold the caller past ctx.
func exchange(ctx context.Context, addr, qname string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypeTXT) // sets RD (RFC 1035 4.1.1)
	m.SetEdns0(ednsUDPSize, false)
	resp, err := exchangeOver(ctx, "udp", addr, m)
	if err == nil && resp.Truncated {
		resp, err = exchangeOver(ctx, "tcp", addr, m)
	}
	if err != nil {
		return nil, err
	}
	if !answersQuestion(resp, qname) {
		return nil, errors.New("the answer is for a different question")
	}
	return resp, nil
}

func exchangeOver(ctx context.Context, network, addr string, m *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: network, UDPSize: ednsUDPSize}
	if deadline, ok := ctx.Deadline(); ok {
		c.Timeout = time.Until(deadline)
	}
	conn, err := c.DialContext(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, m, conn)
	return resp, err
}

// answersQuestion checks the response echoes the question asked (RFC 1035
// 7.3: a resolver matches replies to queries by ID and question).
func answersQuestion(resp *dns.Msg, qname string) bool {
	if len(resp.Question) != 1 {
		return resp.Rcode != dns.RcodeSuccess && len(resp.Question) == 0
	}
	q := resp.Question[0]
	return dns.CanonicalName(q.Name) == qname && q.Qtype == dns.TypeTXT
}

// followChain walks the CNAMEs in an answer section from qname (RFC 1034
// 3.6.2), appending each target to chain, and returns the final name and
// the TXT values owned by it. Records owned by other names are ignored, as a
// stub ignores what it did not ask about.
func followChain(answer []dns.RR, qname string, chain *[]string) (string, []string, error) {
	aliases := map[string]string{}
	texts := map[string][]string{}
	for _, rr := range answer {
		owner := dns.CanonicalName(rr.Header().Name)
		switch rr := rr.(type) {
		case *dns.CNAME:
			aliases[owner] = dns.CanonicalName(rr.Target)
		case *dns.TXT:
			value, err := joinCharacterStrings(rr.Txt)
			if err != nil {
				return "", nil, err
			}
			texts[owner] = append(texts[owner], value)
		}
	}
	name := qname
	for {
		target, ok := aliases[name]
		if !ok {
			return name, texts[name], nil
		}
		if len(*chain) >= maxCNAMEHops {
			return "", nil, fmt.Errorf("CNAME chain from %s is longer than %d aliases", qname, maxCNAMEHops)
		}
		*chain = append(*chain, target)
		name = target
	}
}

// joinCharacterStrings concatenates the character-strings of one TXT record
// with nothing between them, as DKIM (RFC 6376 3.6.2.2) and SPF (RFC 7208
// 3.3) read a record that had to be split into 255-byte pieces.
func joinCharacterStrings(parts []string) (string, error) {
	var b strings.Builder
	for _, p := range parts {
		raw, err := unescape(p)
		if err != nil {
			return "", err
		}
		b.WriteString(raw)
	}
	return b.String(), nil
}

// unescape undoes the presentation escaping miekg/dns applies to TXT data
// when it unpacks a message: \X for a quote or backslash and \DDD for a byte
// outside printable ASCII (RFC 1035 5.1).
func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch {
		case i == len(s):
			return "", errors.New("TXT data ends in a lone backslash")
		case i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]):
			n := int(s[i]-'0')*100 + int(s[i+1]-'0')*10 + int(s[i+2]-'0')
			if n > 255 {
				return "", fmt.Errorf("TXT data has an escape \\%s beyond a byte", s[i:i+3])
			}
			b.WriteByte(byte(n))
			i += 2
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// describe turns a transport error into one that says what happened without
// the socket noise: the caller's cancellation, the resolver's timeout, or
// the underlying error.
func describe(parent context.Context, r Resolver, qname string, err error) error {
	if parent.Err() != nil {
		return fmt.Errorf("query for %s at %s: %w", qname, r.Addr, parent.Err())
	}
	var netErr net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, net.ErrClosed) ||
		(errors.As(err, &netErr) && netErr.Timeout()) {
		return fmt.Errorf("no answer from %s for %s within %s", r.Addr, qname, r.timeout())
	}
	return fmt.Errorf("query for %s at %s: %w", qname, r.Addr, err)
}

func rcodeName(rcode int) string {
	if s, ok := dns.RcodeToString[rcode]; ok {
		return s
	}
	return fmt.Sprintf("RCODE %d", rcode)
}
