// Package dnsfake is an in-process DNS server for tests. It listens on UDP
// and TCP on one 127.0.0.1 port and answers like a recursive resolver does
// to a stub: a CNAME chain and the TXT records at its end come back in one
// response. Tests set records, make names vanish (NXDOMAIN), make the server
// fail (SERVFAIL) or hang (no answer at all), and count the queries a name
// received.
package dnsfake

import (
	"fmt"
	"net"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// maxChase bounds how many CNAMEs the server follows inside one answer, so
// that a CNAME loop set up by a test still gets an answer (a long chain that
// the client must reject) instead of spinning.
const maxChase = 16

// ttl is the TTL of every record served; tests never wait for it.
const ttl = 60

// Server is a fake DNS resolver. The zero value is not usable; call New.
type Server struct {
	udp, tcp *dns.Server
	addr     string

	mu           sync.Mutex
	txt          map[string][]string // canonical name -> raw TXT values
	cname        map[string]string   // canonical name -> canonical target
	hidden       map[string]bool
	queries      map[string]int
	silent       bool
	servfail     bool
	notRecursive bool
}

// New starts a server on 127.0.0.1 with an ephemeral port shared by UDP and
// TCP (RFC 1035 4.2: the same port serves both transports).
func New() (*Server, error) {
	s := &Server{
		txt:     map[string][]string{},
		cname:   map[string]string{},
		hidden:  map[string]bool{},
		queries: map[string]int{},
	}
	pc, l, err := listenPair()
	if err != nil {
		return nil, err
	}
	s.addr = pc.LocalAddr().String()
	s.udp = &dns.Server{PacketConn: pc, Handler: s}
	s.tcp = &dns.Server{Listener: l, Handler: s}
	if err := start(s.udp); err != nil {
		l.Close()
		return nil, err
	}
	if err := start(s.tcp); err != nil {
		s.udp.Shutdown()
		return nil, err
	}
	return s, nil
}

// listenPair binds UDP on an ephemeral port, then TCP on the same port. The
// TCP port can be taken by another process, so it tries a few UDP ports.
func listenPair() (net.PacketConn, net.Listener, error) {
	var lastErr error
	for range 10 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, err
		}
		l, err := net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = err
	}
	return nil, nil, fmt.Errorf("dnsfake: no port free for both UDP and TCP: %w", lastErr)
}

// start serves srv in the background and returns once it is serving, so
// that Close never races a server that has not started yet.
func start(srv *dns.Server) error {
	started := make(chan struct{})
	failed := make(chan error, 1)
	srv.NotifyStartedFunc = func() { close(started) }
	go func() { failed <- srv.ActivateAndServe() }()
	select {
	case <-started:
		return nil
	case err := <-failed:
		return fmt.Errorf("dnsfake: serve: %w", err)
	}
}

// Addr is the host:port both transports listen on.
func (s *Server) Addr() string { return s.addr }

// Close stops both listeners. Calling it twice is harmless.
func (s *Server) Close() {
	s.udp.Shutdown()
	s.tcp.Shutdown()
}

// SetTXT replaces the TXT records at name, one record per value. A value
// longer than 255 bytes is served as several character-strings of at most
// 255 bytes each, as a DNS operator has to publish it (RFC 1035 3.3.14,
// RFC 6376 3.6.2.2).
func (s *Server) SetTXT(name string, values ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.txt[key(name)] = append([]string(nil), values...)
}

// SetCNAME makes name an alias of target (RFC 1035 3.3.1).
func (s *Server) SetCNAME(name, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cname[key(name)] = key(target)
}

// Delete removes every record at name; the name then answers NXDOMAIN.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.txt, key(name))
	delete(s.cname, key(name))
}

// Hide makes name answer NXDOMAIN while hidden, keeping its records for when
// it is shown again.
func (s *Server) Hide(name string, hidden bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hidden[key(name)] = hidden
}

// Silence makes the server read queries and never answer, like a resolver
// that hangs or a firewall that drops replies.
func (s *Server) Silence(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.silent = on
}

// ServFail makes every answer SERVFAIL (RFC 1035 4.1.1 RCODE 2).
func (s *Server) ServFail(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.servfail = on
}

// Recursive(false) makes the server answer only the records at the asked
// name, as an authoritative server does: a CNAME whose target it would
// otherwise chase comes back alone, and the client has to ask for the
// target itself. Servers start recursive.
func (s *Server) Recursive(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notRecursive = !on
}

// Queries is how many queries for name arrived, on either transport,
// including those left unanswered by Silence.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[key(name)]
}

// key is the form names are stored in: lower case and fully qualified, since
// DNS names compare case-insensitively (RFC 1035 2.3.3).
func key(name string) string { return dns.CanonicalName(name) }

// ServeDNS answers one query. It implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	resp, ok := s.respond(req)
	if !ok {
		return
	}
	if _, isUDP := w.LocalAddr().(*net.UDPAddr); isUDP {
		resp.Truncate(udpSize(req))
	}
	w.WriteMsg(resp)
}

// udpSize is the largest UDP answer the client takes: 512 bytes unless it
// advertised more with EDNS0 (RFC 1035 4.2.1, RFC 6891 6.2.3).
func udpSize(req *dns.Msg) int {
	if opt := req.IsEdns0(); opt != nil {
		return int(opt.UDPSize())
	}
	return dns.MinMsgSize
}

// respond builds the answer to req; ok is false when the server stays silent.
func (s *Server) respond(req *dns.Msg) (resp *dns.Msg, ok bool) {
	resp = new(dns.Msg)
	if len(req.Question) != 1 {
		return resp.SetRcode(req, dns.RcodeFormatError), true
	}
	q := req.Question[0]
	s.mu.Lock()
	defer s.mu.Unlock()
	s.queries[key(q.Name)]++
	if s.silent {
		return nil, false
	}
	if s.servfail {
		return resp.SetRcode(req, dns.RcodeServerFailure), true
	}
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if opt := req.IsEdns0(); opt != nil {
		resp.SetEdns0(opt.UDPSize(), false)
	}
	resp.Answer, resp.Rcode = s.resolve(q)
	return resp, true
}

// resolve walks the CNAME chain from the question (when recursive) and
// returns the chain plus the records of the type asked at its end.
func (s *Server) resolve(q dns.Question) ([]dns.RR, int) {
	var answer []dns.RR
	owner := q.Name // the first record echoes the question's spelling
	for range maxChase {
		name := key(owner)
		if s.hidden[name] {
			return answer, dns.RcodeNameError
		}
		target, isAlias := s.cname[name]
		if isAlias {
			answer = append(answer, &dns.CNAME{Hdr: header(owner, dns.TypeCNAME), Target: target})
			if q.Qtype == dns.TypeCNAME || s.notRecursive || !s.known(target) {
				return answer, dns.RcodeSuccess
			}
			owner = target
			continue
		}
		values, exists := s.txt[name]
		if !exists {
			// An alias to a name with no data is NXDOMAIN for the target
			// (RFC 6604 2.1); so is a name that was never set.
			return answer, dns.RcodeNameError
		}
		if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
			for _, v := range values {
				answer = append(answer, &dns.TXT{Hdr: header(owner, dns.TypeTXT), Txt: characterStrings(v)})
			}
		}
		return answer, dns.RcodeSuccess // no TXT asked: NODATA
	}
	return answer, dns.RcodeSuccess
}

// known tells whether the server holds any data for name, i.e. whether a
// recursive resolver would be able to chase a CNAME to it.
func (s *Server) known(name string) bool {
	_, alias := s.cname[name]
	_, txt := s.txt[name]
	return alias || txt || s.hidden[name]
}

func header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: dns.Fqdn(name), Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// characterStrings splits a raw value into character-strings of at most 255
// bytes (RFC 1035 3.3: one length octet), escaped the way miekg/dns packs
// TXT strings (a backslash escapes the next byte).
func characterStrings(value string) []string {
	if value == "" {
		return []string{""} // one empty character-string: a valid, empty TXT
	}
	var out []string
	for len(value) > 0 {
		n := min(len(value), 255)
		out = append(out, escape(value[:n]))
		value = value[n:]
	}
	return out
}

func escape(s string) string {
	return strings.ReplaceAll(s, `\`, `\\`)
}
