// Package mailgunfake is a fake Mailgun API for the Keys API and the two
// calls the driver tests keys with, following the reference:
// https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/keys/post-v1-keys
// https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/keys/get-v1-keys
// https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Keys
// https://documentation.mailgun.com/docs/mailgun/api-reference/authentication
//
// Requests authenticate with HTTP Basic, user "api", password the key; a
// missing or unknown key gets 401 with the plain text "Forbidden", as
// Mailgun answers. Errors otherwise are {"message": "..."}. Only an admin
// key manages keys; a domain sending key may only post messages for its
// domain.
package mailgunfake

import (
	"crypto/rand"
	"encoding/hex"
	"maps"
	"net/http"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
)

// Server is a fake Mailgun account. Ops for faults and Requests: "create"
// (POST /v1/keys), "list" (GET /v1/keys), "delete" (DELETE /v1/keys/{id}), "domains" (GET
// /v3/domains), "messages" (POST /v3/{domain}/messages).
type Server struct {
	providertest.Base
	providertest.Echo

	mu      sync.Mutex
	keys    map[string]*key // by secret
	domains map[string]bool
	// unfiltered makes the listing ignore kind and domain_name.
	unfiltered bool
}

type key struct {
	id, secret, role, kind, domain, description string
	created                                     time.Time // UTC, to the second
}

// timeLayout is the Keys API's created_at and updated_at: UTC without an
// offset.
const timeLayout = "2006-01-02T15:04:05"

var roles = map[string]bool{"admin": true, "basic": true, "sending": true, "developer": true}
var kinds = map[string]bool{"domain": true, "user": true, "web": true}

// New starts the fake on 127.0.0.1.
func New() *Server {
	f := &Server{keys: map[string]*key{}, domains: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/keys", f.create)
	mux.HandleFunc("GET /v1/keys", f.list)
	mux.HandleFunc("DELETE /v1/keys/{id}", f.delete)
	mux.HandleFunc("GET /v3/domains", f.listDomains)
	mux.HandleFunc("POST /v3/{domain}/messages", f.messages)
	f.Serve(mux)
	return f
}

// AddDomain adds a sending domain to the account.
func (f *Server) AddDomain(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.domains[name] = true
}

// AddKey seeds a key with role, description (the key's name) and, for a
// domain key, its domain (added to the account), and returns it as the
// engine would store it.
func (f *Server) AddKey(role, description, domain string) provider.Key {
	f.mu.Lock()
	defer f.mu.Unlock()
	kind := "user"
	if domain != "" {
		kind = "domain"
		f.domains[domain] = true
	}
	k := f.newKeyLocked(role, kind, domain, description)
	return provider.Key{ID: k.id, Secret: k.secret, Name: k.description, Role: k.role, Domain: k.domain}
}

// SetCreated sets the creation time of the key with id, as if it had been
// made at t, and reports whether there is such a key.
func (f *Server) SetCreated(id string, t time.Time) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range f.keys {
		if k.id == id {
			k.created = t.UTC().Truncate(time.Second)
			return true
		}
	}
	return false
}

// Live returns the secrets of the keys the fake accepts, sorted.
func (f *Server) Live() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Sorted(maps.Keys(f.keys))
}

// IgnoreListFilters makes the listing ignore its kind and domain_name
// filters, as an API that dropped them would, so tests prove a driver
// checks what it gets.
func (f *Server) IgnoreListFilters(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.unfiltered = on
}

// newKeyLocked mints a key shaped like Mailgun's: a 32-8-8 hex secret and
// an 8-8 hex id.
func (f *Server) newKeyLocked(role, kind, domain, description string) *key {
	k := &key{id: randomHex(4) + "-" + randomHex(4), secret: randomHex(16) + "-" + randomHex(4) + "-" + randomHex(4),
		role: role, kind: kind, domain: domain, description: description, created: time.Now().UTC().Truncate(time.Second)}
	f.keys[k.secret] = k
	return k
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// authorize finds the key of the request's basic auth; it answers 401
// itself and reports whether to go on.
func (f *Server) authorize(w http.ResponseWriter, r *http.Request) (*key, bool) {
	user, pass, ok := r.BasicAuth()
	f.mu.Lock()
	k := f.keys[pass]
	f.mu.Unlock()
	if !ok || user != "api" || k == nil {
		f.forbidden(w, r)
		return nil, false
	}
	return k, true
}

// admitAdmin is Intercept of op, then authorize, and 403 unless the key
// is an admin key (the only role that manages keys).
func (f *Server) admitAdmin(op string, w http.ResponseWriter, r *http.Request) bool {
	caller, ok := providertest.Admit(&f.Base, op, w, r, f.writeError, f.authorize)
	if ok && caller.role != "admin" {
		f.writeMessage(w, r, http.StatusForbidden, "Insufficient permissions to manage API keys")
		return false
	}
	return ok
}

// forbidden is Mailgun's 401: the plain text "Forbidden".
func (f *Server) forbidden(w http.ResponseWriter, r *http.Request) {
	msg := "Forbidden"
	if f.Echoing() {
		_, pass, _ := r.BasicAuth()
		msg += " " + pass
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write([]byte(msg))
}

// parseForm reads a multipart or urlencoded body; anything else is 400.
func (f *Server) parseForm(w http.ResponseWriter, r *http.Request) bool {
	var err error
	switch providertest.MediaType(r) {
	case "multipart/form-data":
		err = r.ParseMultipartForm(1 << 20)
	case "application/x-www-form-urlencoded":
		err = r.ParseForm()
	default:
		f.writeMessage(w, r, http.StatusBadRequest, "Expected a multipart/form-data or urlencoded body")
		return false
	}
	if err != nil {
		f.writeMessage(w, r, http.StatusBadRequest, "Malformed form body")
		return false
	}
	return true
}

// create: POST /v1/keys -> 200 {"key": {...}, "message"}; admin keys only.
func (f *Server) create(w http.ResponseWriter, r *http.Request) {
	if !f.admitAdmin("create", w, r) {
		return
	}
	if !f.parseForm(w, r) {
		return
	}
	role, kind, domain := r.PostFormValue("role"), r.PostFormValue("kind"), r.PostFormValue("domain_name")
	if kind == "" {
		kind = "user"
	}
	if msg := checkCreate(role, kind, domain); msg != "" {
		f.writeMessage(w, r, http.StatusBadRequest, msg)
		return
	}
	f.mu.Lock()
	if kind == "domain" && !f.domains[domain] {
		f.mu.Unlock()
		f.writeMessage(w, r, http.StatusNotFound, "domain not found")
		return
	}
	k := f.newKeyLocked(role, kind, domain, r.PostFormValue("description"))
	f.mu.Unlock()
	providertest.WriteJSON(w, http.StatusOK, map[string]any{"key": keyObject(k), "message": "great success"})
}

// checkCreate is the create request's validation: role required and known,
// kind known, a domain key names its domain, a sending key is a domain key.
func checkCreate(role, kind, domain string) string {
	switch {
	case role == "":
		return "role is required"
	case !roles[role]:
		return "role is invalid"
	case !kinds[kind]:
		return "kind is invalid"
	case kind == "domain" && domain == "":
		return "domain_name is required for keys of domain kind"
	case role == "sending" && kind != "domain":
		return "sending role requires a key of domain kind"
	}
	return ""
}

// keyObject is the documented key JSON of the create answer, with the
// secret; domain_name is null for user keys.
func keyObject(k *key) map[string]any {
	obj := listedKey(k)
	obj["secret"] = k.secret
	return obj
}

// listedKey is the key JSON of the listing: everything but the secret.
func listedKey(k *key) map[string]any {
	var domain any
	if k.domain != "" {
		domain = k.domain
	}
	created := k.created.Format(timeLayout)
	return map[string]any{"id": k.id, "description": k.description, "kind": k.kind,
		"role": k.role, "domain_name": domain, "is_disabled": false, "requestor": nil, "user_name": nil,
		"created_at": created, "updated_at": created}
}

// list: GET /v1/keys[?kind=&domain_name=] -> 200 {"items": [...],
// "total_count"}; admin keys only. kind, when given, must be domain, user
// or web (else 400 with Mailgun's documented message); domain_name keeps
// the keys of that domain. There is no paging: total_count is the number
// of items. The order is unspecified; the fake's is random.
func (f *Server) list(w http.ResponseWriter, r *http.Request) {
	if !f.admitAdmin("list", w, r) {
		return
	}
	q := r.URL.Query()
	kind, domain := q.Get("kind"), q.Get("domain_name")
	if kind != "" && !kinds[kind] {
		f.writeMessage(w, r, http.StatusBadRequest, "expected `kind` param to be one of [domain user web] or absent")
		return
	}
	f.mu.Lock()
	items := []map[string]any{}
	for _, k := range f.keys {
		if f.unfiltered || (kind == "" || k.kind == kind) && (domain == "" || k.domain == domain) {
			items = append(items, listedKey(k))
		}
	}
	f.mu.Unlock()
	providertest.WriteJSON(w, http.StatusOK, map[string]any{"items": items, "total_count": len(items)})
}

// delete: DELETE /v1/keys/{id} -> 200 {"message": "key deleted"}; 404 for
// an unknown id.
func (f *Server) delete(w http.ResponseWriter, r *http.Request) {
	if !f.admitAdmin("delete", w, r) {
		return
	}
	f.mu.Lock()
	var found *key
	for _, k := range f.keys {
		if k.id == r.PathValue("id") {
			found = k
		}
	}
	if found != nil {
		delete(f.keys, found.secret)
	}
	f.mu.Unlock()
	if found == nil {
		f.writeMessage(w, r, http.StatusNotFound, "no key matching id")
		return
	}
	providertest.WriteJSON(w, http.StatusOK, map[string]string{"message": "key deleted"})
}

// listDomains: GET /v3/domains -> {"total_count", "items"}; user keys only
// (a domain sending key may only send).
func (f *Server) listDomains(w http.ResponseWriter, r *http.Request) {
	caller, ok := providertest.Admit(&f.Base, "domains", w, r, f.writeError, f.authorize)
	if !ok {
		return
	}
	if caller.kind == "domain" {
		f.forbidden(w, r)
		return
	}
	f.mu.Lock()
	items := []map[string]string{}
	for name := range f.domains {
		items = append(items, map[string]string{"name": name, "state": "active"})
	}
	f.mu.Unlock()
	sort.Slice(items, func(i, j int) bool { return items[i]["name"] < items[j]["name"] })
	total := len(items)
	if len(items) > 1 && r.URL.Query().Get("limit") == "1" {
		items = items[:1]
	}
	providertest.WriteJSON(w, http.StatusOK, map[string]any{"total_count": total, "items": items})
}

// messages: POST /v3/{domain}/messages. The key is checked first (401),
// then the domain (404), then the form (400 "from parameter is missing").
// The fake sends nothing; a complete message is answered as queued.
func (f *Server) messages(w http.ResponseWriter, r *http.Request) {
	caller, ok := providertest.Admit(&f.Base, "messages", w, r, f.writeError, f.authorize)
	if !ok {
		return
	}
	domain := r.PathValue("domain")
	if caller.kind == "domain" && caller.domain != domain {
		f.forbidden(w, r)
		return
	}
	f.mu.Lock()
	known := f.domains[domain]
	f.mu.Unlock()
	if !known {
		f.writeMessage(w, r, http.StatusNotFound, "Domain not found: "+domain)
		return
	}
	if !f.parseForm(w, r) {
		return
	}
	for _, field := range []string{"from", "to"} {
		if r.PostFormValue(field) == "" {
			f.writeMessage(w, r, http.StatusBadRequest, field+" parameter is missing")
			return
		}
	}
	providertest.WriteJSON(w, http.StatusOK, map[string]string{"id": "<fake@" + domain + ">", "message": "Queued. Thank you."})
}

// writeError answers an injected fault: 401 as plain "Forbidden", others
// as Mailgun's error JSON.
func (f *Server) writeError(w http.ResponseWriter, status int) {
	if status == http.StatusUnauthorized {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write([]byte("Forbidden"))
		return
	}
	providertest.WriteJSON(w, status, map[string]string{"message": http.StatusText(status)})
}

// writeMessage answers {"message": msg}; with EchoSecrets on, the message
// quotes the request's key.
func (f *Server) writeMessage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if f.Echoing() {
		_, pass, _ := r.BasicAuth()
		msg += " (key " + pass + ")"
	}
	providertest.WriteJSON(w, status, map[string]string{"message": msg})
}
