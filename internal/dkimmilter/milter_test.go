package dkimmilter

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-milter"
)

// recordingSigner returns a fixed signature field and keeps what it got.
type recordingSigner struct {
	mu    sync.Mutex
	keys  []Key
	msgs  []string
	field string
	err   error
}

func (r *recordingSigner) Sign(_ context.Context, key Key, msg []byte) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keys = append(r.keys, key)
	r.msgs = append(r.msgs, string(msg))
	return r.field, r.err
}

const engineField = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;\r\n" +
	"\ts=pm202611; h=from:subject; bh=abc=;\r\n\tb=XYZ\r\n"

// startFilter serves f on a loopback port and returns its address.
func startFilter(t *testing.T, f *Filter) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := f.Server()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

type field struct{ name, value string }

// sendMessage plays the MTA: header values without the space after the
// colon, folds LF-only, as Postfix passes them to a version 2 milter.
func sendMessage(t *testing.T, addr string, fields []field, body string) ([]milter.ModifyAction, *milter.Action) {
	t.Helper()
	c := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask:   milter.OptAddHeader | milter.OptChangeHeader,
		ProtocolMask: milter.OptNoConnect | milter.OptNoHelo | milter.OptNoRcptTo,
	})
	defer c.Close()
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Mail("sender@example.com", nil); err != nil {
		t.Fatal(err)
	}
	for _, f := range fields {
		if _, err := s.HeaderField(f.name, f.value); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.HeaderEnd(); err != nil {
		t.Fatal(err)
	}
	mods, act, err := s.BodyReadFrom(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return mods, act
}

func newTestFilter(signer MessageSigner, failOpen bool, logs *bytes.Buffer) *Filter {
	m, _ := ParseDomainMap(strings.NewReader("example.com tenant-1\n*.example.net tenant-2"))
	return &Filter{
		Resolver: &Resolver{Map: m}, Signer: signer, FailOpen: failOpen,
		Timeout: 5 * time.Second, MaxMessageBytes: 1 << 20,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

var testFields = []field{
	{"From", "Alice <alice@Example.COM>"},
	{"Subject", "Quarterly\n\tfigures"}, // folded, LF-only as the MTA passes it
	{"To", "  bob@example.org"},         // "To:   bob...": the MTA took off one space
}

const testBody = "Hello Bob,\r\nsecret body text.\r\n"

func TestMilterSignsAndInsertsOnTop(t *testing.T) {
	var logs bytes.Buffer
	signer := &recordingSigner{field: engineField}
	addr := startFilter(t, newTestFilter(signer, false, &logs))

	mods, act := sendMessage(t, addr, testFields, testBody)
	if act.Code != milter.ActAccept {
		t.Fatalf("action %c, want accept", act.Code)
	}
	if len(mods) != 1 || mods[0].Code != milter.ActInsertHeader || mods[0].HeaderIndex != 0 ||
		mods[0].HeaderName != "DKIM-Signature" {
		t.Fatalf("modifications: %+v", mods)
	}
	// Exactly the engine's field after "DKIM-Signature: ", folds as LF +
	// tab, no final line end: the MTA writes "DKIM-Signature: " + value.
	want := "v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.com;\n\ts=pm202611; h=from:subject; bh=abc=;\n\tb=XYZ"
	if mods[0].HeaderValue != want {
		t.Fatalf("header value %q\nwant %q", mods[0].HeaderValue, want)
	}
	// Vault got the message as the MTA will transmit it, CRLF throughout.
	wantMsg := "From: Alice <alice@Example.COM>\r\nSubject: Quarterly\r\n\tfigures\r\nTo:   bob@example.org\r\n\r\n" + testBody
	if len(signer.msgs) != 1 || signer.msgs[0] != wantMsg || signer.keys[0] != (Key{"tenant-1", "example.com"}) {
		t.Fatalf("signed %v %q", signer.keys, signer.msgs)
	}
	assertNoMessageInLogs(t, logs.String())
}

func TestMilterTwoMessagesOnOneConnection(t *testing.T) {
	var logs bytes.Buffer
	signer := &recordingSigner{field: engineField}
	addr := startFilter(t, newTestFilter(signer, false, &logs))
	c := milter.NewClientWithOptions("tcp", addr, milter.ClientOptions{
		ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		ActionMask: milter.OptAddHeader, ProtocolMask: milter.OptNoConnect | milter.OptNoHelo | milter.OptNoRcptTo,
	})
	defer c.Close()
	s, err := c.Session()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, subject := range []string{"first", "second"} {
		if _, err := s.Mail("a@example.com", nil); err != nil {
			t.Fatal(err)
		}
		for _, f := range []field{{"From", "a@example.com"}, {"Subject", subject}} {
			if _, err := s.HeaderField(f.name, f.value); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.HeaderEnd(); err != nil {
			t.Fatal(err)
		}
		if mods, _, err := s.BodyReadFrom(strings.NewReader(subject + " body\r\n")); err != nil || len(mods) != 1 {
			t.Fatalf("%s: %v %+v", subject, err, mods)
		}
	}
	want := []string{
		"From: a@example.com\r\nSubject: first\r\n\r\nfirst body\r\n",
		"From: a@example.com\r\nSubject: second\r\n\r\nsecond body\r\n",
	}
	if strings.Join(signer.msgs, "|") != strings.Join(want, "|") {
		t.Fatalf("signed %q", signer.msgs)
	}
}

func TestMilterWildcardAndUnknownDomains(t *testing.T) {
	var logs bytes.Buffer
	signer := &recordingSigner{field: engineField}
	addr := startFilter(t, newTestFilter(signer, false, &logs))

	fields := []field{{"From", "news@mail.example.net"}, {"Subject", "x"}}
	if mods, _ := sendMessage(t, addr, fields, "b\r\n"); len(mods) != 1 {
		t.Fatalf("wildcard domain unsigned: %+v", mods)
	}
	if signer.keys[0] != (Key{"tenant-2", "mail.example.net"}) {
		t.Fatalf("key %v", signer.keys[0])
	}

	// Unknown, missing and unparsable senders pass unsigned, never deferred.
	for _, from := range []string{"someone@unknown.example", "", "not an address"} {
		fields := []field{{"Subject", "x"}}
		if from != "" {
			fields = append(fields, field{"From", from})
		}
		mods, act := sendMessage(t, addr, fields, "b\r\n")
		if len(mods) != 0 || act.Code != milter.ActAccept {
			t.Fatalf("From %q: %+v %c", from, mods, act.Code)
		}
	}
	if len(signer.msgs) != 1 {
		t.Fatalf("%d signatures asked, want 1", len(signer.msgs))
	}
	if !strings.Contains(logs.String(), "domain=unknown.example") {
		t.Fatalf("the unknown domain is not logged:\n%s", logs.String())
	}
}

func TestMilterFailurePolicy(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		var logs bytes.Buffer
		signer := &recordingSigner{err: &ItemError{Msg: "batch_input[0]: invalid message: not an RFC 5322 message: malformed line: Subject: Quarterly"}}
		addr := startFilter(t, newTestFilter(signer, failOpen, &logs))
		mods, act := sendMessage(t, addr, testFields, testBody)
		if len(mods) != 0 {
			t.Fatalf("failOpen=%t: modifications %+v", failOpen, mods)
		}
		switch {
		case failOpen && act.Code != milter.ActAccept:
			t.Fatalf("fail open answered %c", act.Code)
		case !failOpen && (act.Code != milter.ActReplyCode || act.SMTPCode != 451):
			t.Fatalf("fail closed answered %c %d %q", act.Code, act.SMTPCode, act.SMTPText)
		}
		if !strings.Contains(logs.String(), "batch_input[0]: invalid message") {
			t.Fatalf("the reason is not logged:\n%s", logs.String())
		}
		assertNoMessageInLogs(t, logs.String())
	}
}

func TestMilterOversizeFollowsPolicy(t *testing.T) {
	var logs bytes.Buffer
	signer := &recordingSigner{field: engineField}
	f := newTestFilter(signer, false, &logs)
	f.MaxMessageBytes = 100
	addr := startFilter(t, f)
	_, act := sendMessage(t, addr, testFields, strings.Repeat("x", 200)+"\r\n")
	if act.Code != milter.ActReplyCode || len(signer.msgs) != 0 {
		t.Fatalf("oversize: %c, %d signed", act.Code, len(signer.msgs))
	}
	if !strings.Contains(logs.String(), "message larger than 100 bytes") {
		t.Fatalf("logs:\n%s", logs.String())
	}
}

func TestMilterOwnerLookupFailureIsASigningFailure(t *testing.T) {
	var logs bytes.Buffer
	signer := &recordingSigner{field: engineField}
	f := newTestFilter(signer, false, &logs)
	f.Resolver.Lookup = &fakeOwners{err: errors.New("dial tcp 127.0.0.1:8200: connection refused")}
	addr := startFilter(t, f)
	fields := []field{{"From", "a@looked-up.example"}}
	if _, act := sendMessage(t, addr, fields, "b\r\n"); act.Code != milter.ActReplyCode {
		t.Fatalf("lookup failure answered %c, want a 451 (fail closed)", act.Code)
	}
}

// assertNoMessageInLogs: no header value (but the domain) nor body text.
func assertNoMessageInLogs(t *testing.T, logs string) {
	t.Helper()
	for _, s := range []string{"Alice", "alice@", "Quarterly", "bob@", "secret body"} {
		if strings.Contains(logs, s) {
			t.Fatalf("the log contains %q:\n%s", s, logs)
		}
	}
}

func TestSignatureValue(t *testing.T) {
	for in, want := range map[string]string{
		"DKIM-Signature: v=1; b=x\r\n":          "v=1; b=x",
		"DKIM-Signature: v=1;\r\n b=x\r\n":      "v=1;\r\n b=x",
		"dkim-signature:v=1\r\n":                "v=1",
		"Received: v=1\r\n":                     "error",
		"DKIM-Signature: v=1;\r\nb=x\r\n":       "error", // a fold must start with white space
		"DKIM-Signature: v=1;\nb=x\r\n":         "error",
		"DKIM-Signature: v=1;\r\n\r\n\tb=x\r\n": "error",
	} {
		got, err := SignatureValue(in)
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("SignatureValue(%q) = %q, want %q", in, got, want)
		}
	}
}

// The size limit counts the message as it is signed: bare LF line ends in
// the body become CRLF, and the blank line between header and body counts.
// A message of exactly the limit is signed; one byte over is not.
func TestMilterSizeLimitCountsTheSignedBytes(t *testing.T) {
	body := strings.Repeat("a line with a bare LF\n", 20)
	sizeOf := func(limit int) (int, *milter.Action) {
		signer := &recordingSigner{field: engineField}
		f := newTestFilter(signer, false, &bytes.Buffer{})
		f.MaxMessageBytes = limit
		_, act := sendMessage(t, startFilter(t, f), testFields, body)
		if len(signer.msgs) == 0 {
			return 0, act
		}
		return len(signer.msgs[0]), act
	}
	signed, _ := sizeOf(1 << 20)
	if signed == 0 {
		t.Fatal("the unlimited message was not signed")
	}
	if n, act := sizeOf(signed); n != signed {
		t.Fatalf("a message of exactly the limit (%d bytes) was refused: %c", signed, act.Code)
	}
	if n, act := sizeOf(signed - 1); n != 0 || act.Code != milter.ActReplyCode {
		t.Fatalf("a message one byte over the limit was signed (%d bytes) or not refused (%c)", n, act.Code)
	}
}
