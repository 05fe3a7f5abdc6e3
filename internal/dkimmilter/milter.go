package dkimmilter

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-milter"
)

// MessageSigner signs one message (the Batcher, or a fake in tests).
type MessageSigner interface {
	Sign(ctx context.Context, key Key, msg []byte) (string, error)
}

// Filter holds what every milter connection shares.
type Filter struct {
	Resolver *Resolver
	Signer   MessageSigner
	// FailOpen passes a message unsigned when it cannot be signed; the
	// default (false) answers a temporary failure, so the MTA keeps the
	// message queued and retries rather than sending it unsigned.
	FailOpen        bool
	Timeout         time.Duration // for the owner lookup and the signature together
	MaxMessageBytes int           // larger messages are not sent to Vault
	Log             *slog.Logger
}

// tempFailReply is the SMTP answer when signing fails closed. Enhanced code
// 4.7.0: a security-related temporary failure.
const tempFailReply = "451 4.7.0 DKIM signing temporarily unavailable, try again later"

// Server returns a milter server whose connections use f. It asks only for
// what signing needs: headers and body. The library speaks milter protocol
// version 2, which has no SMFIP_HDR_LEADSPC: the MTA passes header values
// without the one space after the colon (Postfix removes exactly one) and
// puts one space there in the fields a milter adds. The message given to
// Vault is rebuilt with that space; only a field written without any space
// after its colon comes out different, which relaxed header
// canonicalization (the engine's default) ignores.
func (f *Filter) Server() *milter.Server {
	return &milter.Server{
		NewMilter: func() milter.Milter { return &session{f: f} },
		Actions:   milter.OptAddHeader,
		Protocol:  milter.OptNoConnect | milter.OptNoHelo | milter.OptNoRcptTo,
	}
}

// session is one MTA connection; messages on it arrive one after another.
type session struct {
	milter.NoOpMilter
	f      *Filter
	header bytes.Buffer // the header section as the MTA will send it, CRLF line ends
	from   string       // the first From field's value
	body   bytes.Buffer
	// bareLF counts the body's LF line ends without a CR: message() adds
	// one byte for each, and the size limit must count it.
	bareLF   int
	oversize bool
}

func (s *session) reset() {
	s.header.Reset()
	s.body.Reset()
	s.from, s.oversize, s.bareLF = "", false, 0
}

// MailFrom starts a message: whatever an earlier one left is dropped.
func (s *session) MailFrom(string, *milter.Modifier) (milter.Response, error) {
	s.reset()
	return milter.RespContinue, nil
}

func (s *session) Abort(*milter.Modifier) error {
	s.reset()
	return nil
}

func (s *session) Header(name, value string, _ *milter.Modifier) (milter.Response, error) {
	if s.from == "" && strings.EqualFold(name, "From") {
		s.from = value
	}
	if s.oversize {
		return milter.RespContinue, nil // kept the From domain, nothing else
	}
	s.header.WriteString(name)
	s.header.WriteString(": ") // the space the MTA took off (see Server)
	s.header.Write(toCRLF([]byte(value)))
	s.header.WriteString("\r\n")
	s.checkSize()
	return milter.RespContinue, nil
}

func (s *session) BodyChunk(chunk []byte, _ *milter.Modifier) (milter.Response, error) {
	if !s.oversize {
		prev := byte(0)
		if n := s.body.Len(); n > 0 {
			prev = s.body.Bytes()[n-1] // a CR may end the chunk before
		}
		for i, c := range chunk {
			if c == '\n' && (i > 0 && chunk[i-1] != '\r' || i == 0 && prev != '\r') {
				s.bareLF++
			}
		}
		s.body.Write(chunk)
		s.checkSize()
	}
	return milter.RespContinue, nil
}

// checkSize stops buffering once the message cannot be signed anyway.
func (s *session) checkSize() {
	if s.f.MaxMessageBytes > 0 && s.header.Len()+2+s.body.Len()+s.bareLF > s.f.MaxMessageBytes {
		s.oversize = true
		s.body.Reset()
	}
}

// Body is the end of the message: sign it, or pass or defer it unsigned.
func (s *session) Body(m *milter.Modifier) (milter.Response, error) {
	defer s.reset()
	domain, err := fromDomain(s.from)
	if err != nil {
		s.f.Log.Info("passing unsigned: no usable From domain", "reason", err.Error())
		return milter.RespAccept, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.f.Timeout)
	defer cancel()
	tenant, err := s.f.Resolver.Tenant(ctx, domain)
	if err != nil {
		return s.fail(domain, fmt.Errorf("looking up the domain's owner: %w", err))
	}
	if tenant == "" {
		s.f.Log.Info("passing unsigned: no DKIM tenant for the domain", "domain", domain)
		return milter.RespAccept, nil
	}
	if s.oversize {
		return s.fail(domain, fmt.Errorf("message larger than %d bytes", s.f.MaxMessageBytes))
	}
	msg := s.message()
	sig, err := s.f.Signer.Sign(ctx, Key{Tenant: tenant, Domain: domain}, msg)
	if err != nil {
		return s.fail(domain, err)
	}
	value, err := SignatureValue(sig)
	if err != nil {
		return s.fail(domain, err)
	}
	// Index 0: on top, above every field it signs, as RFC 6376 5.6 advises.
	if err := m.InsertHeader(0, "DKIM-Signature", value); err != nil {
		return nil, err // the connection is broken; the MTA applies milter_default_action
	}
	s.f.Log.Debug("signed", "domain", domain, "tenant", tenant)
	return milter.RespAccept, nil
}

// message is the header section, the empty line and the body, CRLF ended.
func (s *session) message() []byte {
	msg := make([]byte, 0, s.header.Len()+2+s.body.Len())
	msg = append(msg, s.header.Bytes()...)
	msg = append(msg, "\r\n"...)
	return append(msg, toCRLF(s.body.Bytes())...)
}

// fail applies the policy. The reason names no header value but the domain.
func (s *session) fail(domain string, err error) (milter.Response, error) {
	reason := logText(err)
	if s.f.FailOpen {
		s.f.Log.Warn("passing unsigned: signing failed (fail open)", "domain", domain, "reason", reason)
		return milter.RespAccept, nil
	}
	s.f.Log.Warn("deferring: signing failed (fail closed)", "domain", domain, "reason", reason)
	return milter.NewResponseStr(byte(milter.ActReplyCode), tempFailReply), nil
}

// logText is an error's text fit for a log: an engine refusal of one
// message may quote the message, so only its rule is kept.
func logText(err error) string {
	var ie *ItemError
	if errors.As(err, &ie) {
		return ie.LogText()
	}
	return err.Error()
}

// SignatureValue turns the engine's dkim_signature, the whole field
// "DKIM-Signature: v=1; ...\r\n\t...\r\n", into the value a milter adds:
// without the name and colon, without the final CRLF, folding kept (the
// milter library sends folds as LF, as MTAs expect), and without the one
// space after the colon, which the MTA puts back (see Server).
func SignatureValue(field string) (string, error) {
	name, value, ok := strings.Cut(field, ":")
	if !ok || !strings.EqualFold(strings.TrimSpace(name), "DKIM-Signature") {
		return "", errors.New("vault answered a dkim_signature that is not a DKIM-Signature field")
	}
	value = strings.TrimPrefix(strings.TrimSuffix(value, "\r\n"), " ")
	if strings.ContainsAny(strings.ReplaceAll(value, "\r\n", ""), "\r\n") {
		return "", errors.New("vault answered a dkim_signature with bare line ends")
	}
	for _, line := range strings.Split(value, "\r\n")[1:] {
		if line == "" || (line[0] != ' ' && line[0] != '\t') {
			return "", errors.New("vault answered a dkim_signature with an invalid fold")
		}
	}
	return value, nil
}

// fromDomain is the canonical domain of the first address of a From value.
func fromDomain(from string) (string, error) {
	if from == "" {
		return "", errors.New("no From field")
	}
	unfolded := strings.NewReplacer("\r", "", "\n", "").Replace(from)
	addrs, err := mail.ParseAddressList(unfolded)
	if err != nil || len(addrs) == 0 {
		return "", errors.New("From field does not parse as an address list")
	}
	at := strings.LastIndexByte(addrs[0].Address, '@')
	if at < 0 {
		return "", errors.New("From address has no domain")
	}
	return dkimkey.CanonicalDomain(addrs[0].Address[at+1:])
}

// toCRLF turns bare LF line ends into CRLF (MTAs may pass folded header
// values with LF alone); CRLF stays as it is.
func toCRLF(b []byte) []byte {
	if !bytes.Contains(b, []byte("\n")) {
		return b
	}
	out := make([]byte, 0, len(b)+16)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, c)
	}
	return out
}
