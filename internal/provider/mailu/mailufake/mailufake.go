// Package mailufake is a fake Mailu admin API for tests: mailboxes with
// passwords, changed with PATCH /api/v1/user/{email} as Mailu's source
// defines it (Mailu/Mailu core/admin/mailu/api/v1/user.py, api/common.py;
// https://mailu.io/master/api.html).
//
// Check is the fake's login check, so an smtpfake server given s.Check
// accepts exactly the passwords set through this API.
package mailufake

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
)

// Server is the fake Mailu API.
type Server struct {
	providertest.Base

	token string

	mu      sync.Mutex
	users   map[string]string
	quoting int
}

// New starts the fake on 127.0.0.1 with a new API token.
func New() *Server {
	var b [16]byte
	_, _ = rand.Read(b[:])
	s := &Server{token: hex.EncodeToString(b[:]), users: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("PATCH /api/v1/user/{email}", s.patchUser)
	s.Serve(mux)
	return s
}

// URL is the API root, as Mailu's WEB_API=/api puts it.
func (s *Server) URL() string { return s.Base.URL() + "/api" }

// Token is the fake's API_TOKEN.
func (s *Server) Token() string { return s.token }

// AddUser adds (or replaces) a mailbox with its password.
func (s *Server) AddUser(email, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[strings.ToLower(email)] = password
}

// Password is the mailbox's current password ("" for no such mailbox).
func (s *Server) Password(email string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.users[strings.ToLower(email)]
}

// Check reports whether password is the mailbox's password: the login
// check of a mail server backed by this Mailu.
func (s *Server) Check(email, password string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.users[strings.ToLower(email)]
	return ok && password != "" && p == password
}

// FailQuoting makes the next n password changes answer 400 with a message
// that quotes the password and the token sent, as a buggy or hostile
// server might: it proves the driver never copies such a message.
func (s *Server) FailQuoting(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quoting = n
}

type response struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

func (s *Server) patchUser(w http.ResponseWriter, r *http.Request) {
	if s.Intercept("set", w, r, s.writeFault) {
		return
	}
	if !s.authorized(w, r) {
		return
	}
	email := r.PathValue("email")
	if providertest.MediaType(r) != "application/json" {
		providertest.WriteJSON(w, http.StatusUnsupportedMediaType, response{Code: 415, Message: "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."})
		return
	}
	var body map[string]any
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		providertest.WriteJSON(w, http.StatusBadRequest, response{Code: 400, Message: "Failed to decode JSON object"})
		return
	}
	pw, isString := body["raw_password"].(string)
	if _, present := body["raw_password"]; present && !isString {
		providertest.WriteJSON(w, http.StatusBadRequest, response{Code: 400, Message: fmt.Sprintf("Input payload validation failed: %v is not of type 'string'", body["raw_password"])})
		return
	}
	if s.takeQuoting() {
		providertest.WriteJSON(w, http.StatusBadRequest, response{Code: 400, Message: fmt.Sprintf("password %q refused for token %q", pw, r.Header.Get("Authorization"))})
		return
	}
	if !validEmail(email) {
		providertest.WriteJSON(w, http.StatusBadRequest, response{Code: 400, Message: fmt.Sprintf("Provided email address %s is not a valid email address", email)})
		return
	}
	if !s.setPassword(email, pw, isString) {
		providertest.WriteJSON(w, http.StatusNotFound, response{Code: 404, Message: fmt.Sprintf("User %s cannot be found", email)})
		return
	}
	providertest.WriteJSON(w, http.StatusOK, response{Code: 200, Message: fmt.Sprintf("User %s has been updated", email)})
}

// authorized is Mailu's api_token_authorization: 401 without the header,
// 403 unless it is the token, with or without "Bearer ".
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	if h == "" {
		providertest.WriteJSON(w, http.StatusUnauthorized, response{Message: "A valid Authorization header is mandatory"})
		return false
	}
	if strings.TrimPrefix(h, "Bearer ") != s.token {
		providertest.WriteJSON(w, http.StatusForbidden, response{Message: "Invalid API token"})
		return false
	}
	return true
}

func (s *Server) takeQuoting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quoting > 0 {
		s.quoting--
		return true
	}
	return false
}

// setPassword changes the password of an existing mailbox (when the body
// had one) and reports whether the mailbox exists.
func (s *Server) setPassword(email, pw string, change bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(email)
	if _, ok := s.users[key]; !ok {
		return false
	}
	if change {
		s.users[key] = pw
	}
	return true
}

func validEmail(email string) bool {
	at := strings.LastIndex(email, "@")
	return at > 0 && at < len(email)-1 && strings.Contains(email[at+1:], ".")
}

// writeFault answers an injected status as Flask-RESTX's abort does.
func (s *Server) writeFault(w http.ResponseWriter, status int) {
	msg := http.StatusText(status)
	if status == http.StatusTooManyRequests {
		msg = "Too many attempts from your IP (rate-limit)"
	}
	providertest.WriteJSON(w, status, response{Message: msg})
}
