// Package providertest is what the fake provider servers share: a record of
// every request they got, for tests to assert exactly what a driver sent,
// faults to inject by operation (an error status, a rate limit, a hang),
// the test server itself, and the parsing of requests and credentials that
// the fakes' APIs have in common.
package providertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
)

// Request is one request a fake got.
type Request struct {
	// Op is the fake's name of the operation: "create", "test", "delete",
	// "list", "set", ...
	Op     string
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
}

// fault is what the next n calls of one operation get.
type fault struct {
	status     int
	retryAfter int
	hang       bool
	n          int
}

// Base records requests and injects faults; every fake embeds it.
type Base struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests []Request
	faults   map[string]*fault
	hangs    chan struct{}
}

// Serve starts the fake's API, h, on 127.0.0.1.
func (b *Base) Serve(h http.Handler) { b.srv = httptest.NewServer(h) }

// URL is the fake's base URL.
func (b *Base) URL() string { return b.srv.URL }

// Close stops the fake, ending hanging calls first.
func (b *Base) Close() {
	b.Release()
	b.srv.Close()
}

// Echo is embedded by the fakes whose error answers can quote the
// request's credential.
type Echo struct {
	mu sync.Mutex
	on bool
}

// EchoSecrets makes error answers quote the request's credential, as a
// careless provider might, so tests prove drivers never repeat them.
func (e *Echo) EchoSecrets(on bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.on = on
}

// Echoing reports whether EchoSecrets is on.
func (e *Echo) Echoing() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.on
}

// Fail makes the next n calls of op answer status (with the provider's
// error shape, written by the fake) instead of doing anything.
func (b *Base) Fail(op string, status, n int) { b.setFault(op, &fault{status: status, n: n}) }

// RateLimit makes the next n calls of op answer 429 with Retry-After.
func (b *Base) RateLimit(op string, retryAfterSecs, n int) {
	b.setFault(op, &fault{status: http.StatusTooManyRequests, retryAfter: retryAfterSecs, n: n})
}

// Hang makes the next n calls of op wait until the client gives up (its
// context ends) or Release is called, and then do nothing.
func (b *Base) Hang(op string, n int) { b.setFault(op, &fault{hang: true, n: n}) }

// Release ends every hanging call.
func (b *Base) Release() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hangs != nil {
		close(b.hangs)
		b.hangs = nil
	}
}

func (b *Base) setFault(op string, f *fault) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.faults == nil {
		b.faults = map[string]*fault{}
	}
	b.faults[op] = f
}

// Record stores the request under op and reports the fault to apply, if
// any: a status to answer, or a hang. The body is read and restored.
func (b *Base) Record(op string, r *http.Request) (status, retryAfter int, hang <-chan struct{}) {
	body := peekBody(r)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests = append(b.requests, Request{Op: op, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
		Header: r.Header.Clone(), Body: body})
	f := b.faults[op]
	if f == nil || f.n <= 0 {
		return 0, 0, nil
	}
	f.n--
	if f.hang {
		if b.hangs == nil {
			b.hangs = make(chan struct{})
		}
		return 0, 0, b.hangs
	}
	return f.status, f.retryAfter, nil
}

// Intercept is Record for a handler: it answers a fault itself, with
// writeError for a status, and reports whether it did. A hang waits for the
// client to go away or Release.
func (b *Base) Intercept(op string, w http.ResponseWriter, r *http.Request, writeError func(w http.ResponseWriter, status int)) bool {
	status, retryAfter, hang := b.Record(op, r)
	switch {
	case hang != nil:
		select {
		case <-r.Context().Done():
		case <-hang:
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return true
	case status != 0:
		if retryAfter > 0 {
			w.Header().Set("Retry-After", fmt.Sprint(retryAfter))
		}
		writeError(w, status)
		return true
	}
	return false
}

// Admit is how a fake's handler starts: the faults of op (Intercept), then
// auth, which finds the caller by the request's credential or answers the
// refusal itself. ok is false when either answered.
func Admit[C any](b *Base, op string, w http.ResponseWriter, r *http.Request, writeError func(w http.ResponseWriter, status int),
	auth func(w http.ResponseWriter, r *http.Request) (C, bool)) (caller C, ok bool) {
	if b.Intercept(op, w, r, writeError) {
		return caller, false
	}
	return auth(w, r)
}

// Requests returns the requests of op so far ("" for all), oldest first.
func (b *Base) Requests(op string) []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Request
	for _, r := range b.requests {
		if op == "" || r.Op == op {
			out = append(out, r)
		}
	}
	return out
}

// Reset forgets recorded requests and faults (not the fake's keys).
func (b *Base) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.requests, b.faults = nil, nil
}

// PeekForm reads a form-encoded body, for routing a request by a form
// field before Intercept records it, and restores the body. It returns
// the body too, for a fake that checks a signature over it.
func PeekForm(r *http.Request) (url.Values, []byte) {
	body := peekBody(r)
	form, _ := url.ParseQuery(string(body))
	return form, body
}

// peekBody reads the request's body and puts it back for the next reader.
func peekBody(r *http.Request) []byte {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	return body
}

// MediaType is the request's Content-Type without its parameters; "" when
// it has none or one that does not parse.
func MediaType(r *http.Request) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt
}

// Bearer is the token of an "Authorization: Bearer <token>" header; ok is
// false when the header is not of that form.
func Bearer(r *http.Request) (token string, ok bool) {
	return strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// WriteJSON answers status with v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
