package providertest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// PeekForm leaves the body whole for the handler and for Record.
func TestPeekForm_RestoresTheBody(t *testing.T) {
	const body = "Action=ListAccessKeys&Version=2010-05-08"
	r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
	form, raw := PeekForm(r)
	if form.Get("Action") != "ListAccessKeys" || string(raw) != body {
		t.Fatalf("peeked %v %q", form, raw)
	}
	var b Base
	b.Record("list", r)
	if got := b.Requests("list"); len(got) != 1 || string(got[0].Body) != body {
		t.Fatalf("recorded %+v after a peek", got)
	}
	if rest, _ := io.ReadAll(r.Body); string(rest) != body {
		t.Fatalf("handler reads %q after a peek", rest)
	}
}

// Admit answers an injected fault without asking auth, and otherwise
// returns what auth decided.
func TestAdmit_FaultBeforeAuth(t *testing.T) {
	var b Base
	asked := 0
	auth := func(w http.ResponseWriter, r *http.Request) (string, bool) {
		asked++
		if tok, ok := Bearer(r); ok && tok == "good" {
			return "caller", true
		}
		w.WriteHeader(http.StatusUnauthorized)
		return "", false
	}
	fault := func(w http.ResponseWriter, status int) { w.WriteHeader(status) }
	call := func(header string) (string, bool, int) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", header)
		w := httptest.NewRecorder()
		c, ok := Admit(&b, "test", w, r, fault, auth)
		return c, ok, w.Code
	}
	b.Fail("test", 503, 1)
	if c, ok, code := call("Bearer good"); ok || c != "" || code != 503 || asked != 0 {
		t.Fatalf("fault: %q %v %d, auth asked %d times", c, ok, code, asked)
	}
	if c, ok, code := call("Bearer bad"); ok || code != 401 || asked != 1 {
		t.Fatalf("bad key: %q %v %d", c, ok, code)
	}
	if c, ok, _ := call("Bearer good"); !ok || c != "caller" {
		t.Fatalf("good key: %q %v", c, ok)
	}
	if _, ok := Bearer(httptest.NewRequest(http.MethodGet, "/", nil)); ok {
		t.Fatal("a request without Authorization has a bearer token")
	}
}
