// Package providertest is what the fake provider servers share: a record of
// every request they got, for tests to assert exactly what a driver sent,
// and faults to inject by operation (an error status, a rate limit, a hang).
package providertest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
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
	mu       sync.Mutex
	requests []Request
	faults   map[string]*fault
	hangs    chan struct{}
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
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
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
