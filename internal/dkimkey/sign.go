package dkimkey

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

// DefaultHeaders are signed when the request names none: the fields RFC 6376
// 5.4.1 recommends. A name absent from the message is still listed in h=, so
// that adding that field later breaks the signature.
var DefaultHeaders = []string{
	"From", "Reply-To", "Subject", "Date", "To", "Cc", "Message-ID",
	"In-Reply-To", "References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
}

// DefaultCanonicalization is c= when the request names none.
const DefaultCanonicalization = "relaxed/relaxed"

// Bounds of the headers list: h= names each field once per occurrence, and
// no real message signs more; a name is far shorter than a header line.
const (
	MaxHeaders    = 64
	MaxHeaderName = 128
)

// HeaderNameRule is the rule of one entry of headers. RFC 5322 field names
// may contain ";" and "=", but those delimit DKIM tags (RFC 6376 3.2), so
// only the RFC 7230 token characters are accepted.
var HeaderNameRule = fmt.Sprintf("a header field name is 1-%d RFC 7230 token characters: "+
	"letters, digits and !#$%%&'*+-.^_`|~ (no \";\" or \"=\", which delimit DKIM tags)", MaxHeaderName)

// isTokenChar is the RFC 7230 3.2.6 tchar set.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isHeaderName(n string) bool {
	if n == "" || len(n) > MaxHeaderName {
		return false
	}
	for i := 0; i < len(n); i++ {
		if !isTokenChar(n[i]) {
			return false
		}
	}
	return true
}

// CheckHeaders validates the headers to sign: token names, at most
// MaxHeaders, From among them. Spaces around an entry are dropped.
func CheckHeaders(names []string) ([]string, error) {
	if len(names) > MaxHeaders {
		return nil, inputerr.New("invalid headers: %d entries, at most %d may be signed", len(names), MaxHeaders)
	}
	out := make([]string, 0, len(names))
	hasFrom := false
	for _, n := range names {
		n = strings.TrimSpace(n)
		if !isHeaderName(n) {
			return nil, inputerr.New("invalid headers entry %s: %s", inputerr.Quote(n), HeaderNameRule)
		}
		hasFrom = hasFrom || strings.EqualFold(n, "From")
		out = append(out, n)
	}
	if !hasFrom {
		return nil, inputerr.New("invalid headers: From must be signed (RFC 6376 5.4)")
	}
	return out, nil
}

// ParseCanonicalization reads c=: header/body, each simple or relaxed; one
// name alone sets the header algorithm and the body uses simple (RFC 6376
// 3.5).
func ParseCanonicalization(value string) (header, body dkim.Canonicalization, err error) {
	parts := strings.Split(strings.ToLower(strings.TrimSpace(value)), "/")
	if len(parts) == 1 {
		parts = append(parts, string(dkim.CanonicalizationSimple))
	}
	ok := func(s string) bool {
		return s == string(dkim.CanonicalizationSimple) || s == string(dkim.CanonicalizationRelaxed)
	}
	if len(parts) != 2 || !ok(parts[0]) || !ok(parts[1]) {
		return "", "", inputerr.New("invalid canonicalization %s: must be header/body with each simple or relaxed, for example relaxed/relaxed", inputerr.Quote(value))
	}
	return dkim.Canonicalization(parts[0]), dkim.Canonicalization(parts[1]), nil
}

// SignOptions validates the request's headers (nil: DefaultHeaders) and
// canonicalization. The caller fills in the domain, selector and key.
func SignOptions(headers []string, canonicalization string) (*dkim.SignOptions, error) {
	opts := &dkim.SignOptions{HeaderKeys: DefaultHeaders}
	var err error
	if opts.HeaderCanonicalization, opts.BodyCanonicalization, err = ParseCanonicalization(canonicalization); err != nil {
		return nil, err
	}
	if headers != nil {
		if opts.HeaderKeys, err = CheckHeaders(headers); err != nil {
			return nil, err
		}
	}
	return opts, nil
}

// asciiSpace is the whitespace skipped in the base64; a table, since every
// byte of a message of megabytes is tested twice (size, then decoding).
var asciiSpace = [256]bool{' ': true, '\t': true, '\n': true, '\r': true, '\v': true, '\f': true}

func isSpace(c byte) bool { return asciiSpace[c] }

// MessageSize is the decoded size of a base64 message, ASCII whitespace
// ignored, computed without decoding so that an oversize message is refused
// before any copy of it is made. A length that no padded base64 has is an
// input error.
func MessageSize(encoded string) (int, error) {
	n, pad := 0, 0
	for i := 0; i < len(encoded); i++ {
		c := encoded[i]
		if isSpace(c) {
			continue
		}
		n++
		if c == '=' {
			pad++
		} else {
			pad = 0
		}
	}
	if n == 0 {
		return 0, inputerr.New("message is required: the base64 of an RFC 5322 message")
	}
	if n%4 != 0 || pad > 2 {
		return 0, inputerr.New("invalid message: not standard base64 (%d characters without whitespace, padded base64 has a multiple of 4)", n)
	}
	return n/4*3 - pad, nil
}

// Sign streams the base64 message, whitespace skipped, through the signer
// and returns the DKIM-Signature header field, folded and ending in CRLF.
// Nothing holds a decoded copy of the whole message.
func Sign(encoded string, opts *dkim.SignOptions) (string, error) {
	s, err := dkim.NewSigner(opts)
	if err != nil {
		return "", fmt.Errorf("dkim signer: %w", err)
	}
	buf := copyBuffers.Get().(*[]byte)
	_, cerr := io.CopyBuffer(s, &decodeErrReader{r: base64Reader(encoded)}, *buf)
	copyBuffers.Put(buf)
	// Close must run in every case; it reports what went wrong in the
	// signer, which reads the header first: errors here are the message's.
	serr := s.Close()
	var de *decodeError
	switch {
	case errors.As(cerr, &de):
		return "", inputerr.New("invalid message: not standard base64 (%v)", de.err)
	case serr != nil || cerr != nil:
		if serr == nil {
			serr = cerr
		}
		return "", inputerr.New("invalid message: not an RFC 5322 message (header fields, an empty line, then the body): %v", serr)
	}
	return s.Signature(), nil
}

// copyBuffers hold Sign's copy buffers. io.Copy would allocate 32 KiB for
// every message, which for the short messages of a batch was most of the
// bytes a sign allocated and kept the garbage collector busy; the buffer
// is free again once the copy returns.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 32*1024); return &b }}

// decodeError marks an error of the base64 input, as opposed to one the
// signer reports through its Write.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }

type decodeErrReader struct{ r io.Reader }

func (d *decodeErrReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF {
		err = &decodeError{err}
	}
	return n, err
}
