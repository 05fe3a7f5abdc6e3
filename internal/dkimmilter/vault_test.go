package dkimmilter

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeVault answers sign and dkim-domains like the engine, accepting one
// token at a time.
type fakeVault struct {
	mu       sync.Mutex
	token    string
	requests []string // method path token
	bodies   []map[string]interface{}
}

func (v *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	v.mu.Lock()
	defer v.mu.Unlock()
	tok := r.Header.Get("X-Vault-Token")
	v.requests = append(v.requests, r.Method+" "+r.URL.Path+" "+tok)
	if tok != v.token {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"errors":["permission denied"]}`))
		return
	}
	switch {
	case r.URL.Path == "/v1/penguinmails/dkim-domains/owned.example":
		w.Write([]byte(`{"data":{"owner":"tenant-1","owner_path":"dkim/tenant-1/owned.example"}}`))
	case strings.HasPrefix(r.URL.Path, "/v1/penguinmails/dkim-domains/"):
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"errors":["no claim"]}`))
	case r.URL.Path == "/v1/penguinmails/dkim/tenant-1/owned.example/sign":
		var in map[string]interface{}
		json.NewDecoder(r.Body).Decode(&in)
		v.bodies = append(v.bodies, in)
		var results []map[string]string
		for i, item := range in["batch_input"].([]interface{}) {
			msg, _ := base64.StdEncoding.DecodeString(item.(map[string]interface{})["message"].(string))
			if strings.HasPrefix(string(msg), "bad") {
				results = append(results, map[string]string{"error": "batch_input[" + string(rune('0'+i)) + "]: invalid message: not an RFC 5322 message: malformed line: Secret-Header: x"})
				continue
			}
			results = append(results, map[string]string{"dkim_signature": "DKIM-Signature: v=1; d=owned.example; b=" + string(msg) + "\r\n"})
		}
		json.NewEncoder(w).Encode(map[string]interface{}{"data": map[string]interface{}{"batch_results": results}})
	default:
		w.WriteHeader(http.StatusConflict)
		w.Write([]byte(`{"errors":["dkim/tenant-1/x.example: the key awaits activation"]}`))
	}
}

func newFakeVaultClient(t *testing.T, token string) (*VaultClient, *fakeVault, string) {
	t.Helper()
	fv := &fakeVault{token: token}
	srv := httptest.NewServer(fv)
	t.Cleanup(srv.Close)
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &VaultClient{Addr: srv.URL, Mount: "penguinmails", Token: &TokenFile{Path: path},
		HTTP: srv.Client(), Headers: []string{"From", "Subject"}}
	return c, fv, path
}

func TestVaultClientSignBatch(t *testing.T) {
	c, fv, _ := newFakeVaultClient(t, "tok-1")
	res, err := c.SignBatch(context.Background(), Key{"tenant-1", "owned.example"},
		[][]byte{[]byte("m1"), []byte("bad"), []byte("m3")})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Signature != "DKIM-Signature: v=1; d=owned.example; b=m1\r\n" || res[2].Err != nil ||
		!strings.HasSuffix(res[2].Signature, "b=m3\r\n") {
		t.Fatalf("results: %+v", res)
	}
	var ie *ItemError
	if !errors.As(res[1].Err, &ie) || ie.LogText() != "batch_input[1]: invalid message" {
		t.Fatalf("refused item: %v", res[1].Err)
	}
	if len(fv.bodies) != 1 || len(fv.requests) != 1 {
		t.Fatalf("%d requests for one batch", len(fv.requests))
	}
	if h := fv.bodies[0]["headers"].([]interface{}); len(h) != 2 || h[0] != "From" {
		t.Fatalf("headers sent: %v", fv.bodies[0]["headers"])
	}

	_, err = c.SignBatch(context.Background(), Key{"tenant-1", "x.example"}, [][]byte{[]byte("m")})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 409 || !strings.Contains(err.Error(), "awaits activation") {
		t.Fatalf("whole-request refusal: %v", err)
	}
}

func TestVaultClientRereadsTokenOn403(t *testing.T) {
	c, fv, path := newFakeVaultClient(t, "tok-old")
	if got, err := c.Owner(context.Background(), "owned.example"); got != "tenant-1" || err != nil {
		t.Fatalf("owner: %q %v", got, err)
	}
	// Agent renews: Vault now takes only the new token, and the file is
	// rewritten with an unchanged mtime, so only the 403 can reveal it.
	st, _ := os.Stat(path)
	fv.mu.Lock()
	fv.token = "tok-new"
	fv.mu.Unlock()
	os.WriteFile(path, []byte("tok-new"), 0o600)
	os.Chtimes(path, st.ModTime(), st.ModTime())

	if got, err := c.Owner(context.Background(), "nobody.example"); got != "" || err != nil {
		t.Fatalf("unowned after renewal: %q %v", got, err)
	}
	want := []string{
		"GET /v1/penguinmails/dkim-domains/owned.example tok-old",
		"GET /v1/penguinmails/dkim-domains/nobody.example tok-old",
		"GET /v1/penguinmails/dkim-domains/nobody.example tok-new",
	}
	if strings.Join(fv.requests, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests:\n%s\nwant:\n%s", strings.Join(fv.requests, "\n"), strings.Join(want, "\n"))
	}

	// A token Vault refuses after the re-read too: one retry, then the 403,
	// whose text carries no token.
	fv.mu.Lock()
	fv.token = "tok-other"
	fv.mu.Unlock()
	_, err := c.Owner(context.Background(), "owned.example")
	var se *StatusError
	if !errors.As(err, &se) || se.Status != 403 || strings.Contains(err.Error(), "tok-") {
		t.Fatalf("refused token: %v", err)
	}
	if len(fv.requests) != 5 {
		t.Fatalf("%d requests, want 5 (one retry only)", len(fv.requests))
	}
}

func TestVaultClientUnreachable(t *testing.T) {
	c, _, _ := newFakeVaultClient(t, "tok")
	c.Addr = "http://127.0.0.1:1"
	c.HTTP = &http.Client{Timeout: 5 * time.Second}
	if _, err := c.SignBatch(context.Background(), Key{"t", "d.example"}, [][]byte{[]byte("m")}); err == nil {
		t.Fatal("no error from an unreachable Vault")
	}
}
