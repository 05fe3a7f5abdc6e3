// Package sendgridfake is a fake SendGrid v3 API for the API key endpoints,
// following the reference pages:
// https://twilio.com/docs/sendgrid/api-reference/api-keys/create-api-keys
// https://twilio.com/docs/sendgrid/api-reference/api-keys/retrieve-an-existing-api-key
// https://twilio.com/docs/sendgrid/api-reference/api-keys/retrieve-all-api-keys-belonging-to-the-authenticated-user
// https://twilio.com/docs/sendgrid/api-reference/api-key-permissions/retrieve-a-list-of-scopes-for-which-this-user-has-access
//
// Requests authenticate with "Authorization: Bearer <key>"; a missing or
// unknown key gets 401, a key without the endpoint's scope 403, both in
// SendGrid's error JSON {"errors":[{"field":..., "message":...}]}. The
// account holds at most 100 keys: the 101st create gets 403, as the
// reference documents (the message text is not documented; the fake's is
// its own).
package sendgridfake

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"mime"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
)

// MaxKeys is the account's limit of API keys.
const MaxKeys = 100

// Server is a fake SendGrid account. Ops for faults and Requests:
// "create", "test" (GET /v3/scopes), "delete", "describe" (GET
// /v3/api_keys/{id}), "list" (GET /v3/api_keys).
type Server struct {
	providertest.Base
	srv *httptest.Server

	mu   sync.Mutex
	keys map[string]*key // by secret
	echo bool
}

type key struct {
	id, secret, name string
	scopes           []string // nil: full access
}

// New starts the fake on 127.0.0.1.
func New() *Server {
	f := &Server{keys: map[string]*key{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v3/api_keys", f.create)
	mux.HandleFunc("GET /v3/api_keys", f.list)
	mux.HandleFunc("GET /v3/api_keys/{id}", f.describe)
	mux.HandleFunc("DELETE /v3/api_keys/{id}", f.delete)
	mux.HandleFunc("GET /v3/scopes", f.scopes)
	f.srv = httptest.NewServer(mux)
	return f
}

// URL is the fake's base URL.
func (f *Server) URL() string { return f.srv.URL }

// Close stops the fake, ending hanging calls first.
func (f *Server) Close() {
	f.Release()
	f.srv.Close()
}

// AddKey seeds a key with name and scopes (none: full access) and returns
// it as the engine would store it.
func (f *Server) AddKey(name string, scopes ...string) provider.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := f.newKeyLocked(name, scopes)
	return provider.Key{ID: k.id, Secret: k.secret, Name: k.name, Scopes: k.scopes}
}

// Live returns the secrets of the keys the fake accepts, sorted.
func (f *Server) Live() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.keys))
	for s := range f.keys {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// EchoSecrets makes error messages quote the request's bearer key, as a
// careless provider might, so tests prove drivers never repeat them.
func (f *Server) EchoSecrets(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.echo = on
}

// Count is the number of keys in the account.
func (f *Server) Count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.keys)
}

func (f *Server) newKeyLocked(name string, scopes []string) *key {
	k := &key{id: randomString(16), secret: "SG." + randomString(16) + "." + randomString(32), name: name}
	if len(scopes) > 0 {
		k.scopes = append([]string(nil), scopes...)
		sort.Strings(k.scopes)
	}
	f.keys[k.secret] = k
	return k
}

// randomString is n random bytes in unpadded base64url: 22 and 43
// characters for 16 and 32, as in SendGrid's 69-character keys.
func randomString(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// authorize finds the bearer key and checks it holds scope ("" for any
// key); it answers 401 or 403 itself and reports whether to go on.
func (f *Server) authorize(w http.ResponseWriter, r *http.Request, scope string) (*key, bool) {
	bearer, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	k := f.keys[bearer]
	f.mu.Unlock()
	if !ok || k == nil {
		f.writeMessage(w, r, http.StatusUnauthorized, "", "authorization required")
		return nil, false
	}
	if scope != "" && k.scopes != nil && !contains(k.scopes, scope) {
		f.writeMessage(w, r, http.StatusForbidden, "", "access forbidden")
		return nil, false
	}
	return k, true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// create: POST /v3/api_keys {"name", "scopes"} -> 201 with the new key.
func (f *Server) create(w http.ResponseWriter, r *http.Request) {
	if f.Intercept("create", w, r, f.writeError) {
		return
	}
	if _, ok := f.authorize(w, r, "api_keys.create"); !ok {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		f.writeMessage(w, r, http.StatusBadRequest, "", "Content-Type should be application/json")
		return
	}
	var body struct {
		Name   string   `json:"name"`
		Scopes []string `json:"scopes"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		f.writeMessage(w, r, http.StatusBadRequest, "", "Bad Request")
		return
	}
	if body.Name == "" {
		f.writeMessage(w, r, http.StatusBadRequest, "name", "missing required argument")
		return
	}
	f.mu.Lock()
	if len(f.keys) >= MaxKeys {
		f.mu.Unlock()
		f.writeMessage(w, r, http.StatusForbidden, "", "Cannot create more than 100 API keys")
		return
	}
	k := f.newKeyLocked(body.Name, body.Scopes)
	f.mu.Unlock()
	writeJSON(w, http.StatusCreated, map[string]any{
		"api_key": k.secret, "api_key_id": k.id, "name": k.name, "scopes": f.scopesOf(k)})
}

// scopesOf is what SendGrid lists for a key: a full-access key holds every
// scope; the fake lists the ones it knows.
func (f *Server) scopesOf(k *key) []string {
	if k.scopes != nil {
		return k.scopes
	}
	return []string{"api_keys.create", "api_keys.delete", "api_keys.read", "api_keys.update", "mail.send"}
}

// list: GET /v3/api_keys[?limit=n] -> {"result": [{"name", "api_key_id"}]},
// names and ids only (never the secrets), at most limit of them when the
// optional limit is a positive integer. The order is unspecified, as in
// the reference; the fake's is random.
func (f *Server) list(w http.ResponseWriter, r *http.Request) {
	if f.Intercept("list", w, r, f.writeError) {
		return
	}
	if _, ok := f.authorize(w, r, "api_keys.read"); !ok {
		return
	}
	f.mu.Lock()
	result := make([]map[string]string, 0, len(f.keys))
	for _, k := range f.keys {
		result = append(result, map[string]string{"name": k.name, "api_key_id": k.id})
	}
	f.mu.Unlock()
	if n, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && n > 0 && n < len(result) {
		result = result[:n]
	}
	writeJSON(w, http.StatusOK, map[string]any{"result": result})
}

// describe: GET /v3/api_keys/{id} -> {"api_key_id", "name", "scopes"}.
func (f *Server) describe(w http.ResponseWriter, r *http.Request) {
	if f.Intercept("describe", w, r, f.writeError) {
		return
	}
	if _, ok := f.authorize(w, r, "api_keys.read"); !ok {
		return
	}
	k := f.byID(r.PathValue("id"))
	if k == nil {
		f.writeMessage(w, r, http.StatusNotFound, "", "unable to find API Key")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"api_key_id": k.id, "name": k.name, "scopes": f.scopesOf(k)})
}

// delete: DELETE /v3/api_keys/{id} -> 204; 404 for an unknown id.
func (f *Server) delete(w http.ResponseWriter, r *http.Request) {
	if f.Intercept("delete", w, r, f.writeError) {
		return
	}
	if _, ok := f.authorize(w, r, "api_keys.delete"); !ok {
		return
	}
	k := f.byID(r.PathValue("id"))
	if k == nil {
		f.writeMessage(w, r, http.StatusNotFound, "", "unable to find API Key to delete")
		return
	}
	f.mu.Lock()
	delete(f.keys, k.secret)
	f.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// scopes: GET /v3/scopes -> {"scopes": [...]} of the calling key.
func (f *Server) scopes(w http.ResponseWriter, r *http.Request) {
	if f.Intercept("test", w, r, f.writeError) {
		return
	}
	k, ok := f.authorize(w, r, "")
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"scopes": f.scopesOf(k)})
}

func (f *Server) byID(id string) *key {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.keys {
		if k.id == id {
			return k
		}
	}
	return nil
}

// writeError answers an injected fault in SendGrid's error shape.
func (f *Server) writeError(w http.ResponseWriter, status int) {
	writeJSON(w, status, errorsBody("", http.StatusText(status)))
}

// writeMessage answers SendGrid's error JSON; with EchoSecrets on the
// message quotes the request's bearer key.
func (f *Server) writeMessage(w http.ResponseWriter, r *http.Request, status int, field, msg string) {
	f.mu.Lock()
	echo := f.echo
	f.mu.Unlock()
	if echo {
		msg += " (key " + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + ")"
	}
	writeJSON(w, status, errorsBody(field, msg))
}

func errorsBody(field, msg string) map[string]any {
	var f any
	if field != "" {
		f = field
	}
	return map[string]any{"errors": []map[string]any{{"field": f, "message": msg}}}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
