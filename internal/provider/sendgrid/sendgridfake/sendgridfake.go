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
	"maps"
	"net/http"
	"slices"
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
	providertest.Echo

	mu   sync.Mutex
	keys map[string]*key // by secret
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
	f.Serve(mux)
	return f
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
	return slices.Sorted(maps.Keys(f.keys))
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
	bearer, ok := providertest.Bearer(r)
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

// admit is Intercept of op, then authorize with scope.
func (f *Server) admit(op, scope string, w http.ResponseWriter, r *http.Request) (*key, bool) {
	return providertest.Admit(&f.Base, op, w, r, f.writeError, func(w http.ResponseWriter, r *http.Request) (*key, bool) {
		return f.authorize(w, r, scope)
	})
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
	if _, ok := f.admit("create", "api_keys.create", w, r); !ok {
		return
	}
	if providertest.MediaType(r) != "application/json" {
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
	providertest.WriteJSON(w, http.StatusCreated, map[string]any{
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
	if _, ok := f.admit("list", "api_keys.read", w, r); !ok {
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
	providertest.WriteJSON(w, http.StatusOK, map[string]any{"result": result})
}

// describe: GET /v3/api_keys/{id} -> {"api_key_id", "name", "scopes"}.
func (f *Server) describe(w http.ResponseWriter, r *http.Request) {
	if _, ok := f.admit("describe", "api_keys.read", w, r); !ok {
		return
	}
	k := f.byID(r.PathValue("id"))
	if k == nil {
		f.writeMessage(w, r, http.StatusNotFound, "", "unable to find API Key")
		return
	}
	providertest.WriteJSON(w, http.StatusOK, map[string]any{"api_key_id": k.id, "name": k.name, "scopes": f.scopesOf(k)})
}

// delete: DELETE /v3/api_keys/{id} -> 204; 404 for an unknown id.
func (f *Server) delete(w http.ResponseWriter, r *http.Request) {
	if _, ok := f.admit("delete", "api_keys.delete", w, r); !ok {
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
	k, ok := f.admit("test", "", w, r)
	if !ok {
		return
	}
	providertest.WriteJSON(w, http.StatusOK, map[string]any{"scopes": f.scopesOf(k)})
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
	providertest.WriteJSON(w, status, errorsBody("", http.StatusText(status)))
}

// writeMessage answers SendGrid's error JSON; with EchoSecrets on the
// message quotes the request's bearer key.
func (f *Server) writeMessage(w http.ResponseWriter, r *http.Request, status int, field, msg string) {
	if f.Echoing() {
		msg += " (key " + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + ")"
	}
	providertest.WriteJSON(w, status, errorsBody(field, msg))
}

func errorsBody(field, msg string) map[string]any {
	var f any
	if field != "" {
		f = field
	}
	return map[string]any{"errors": []map[string]any{{"field": f, "message": msg}}}
}
