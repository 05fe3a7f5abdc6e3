// Package postmarkfake is a fake Postmark API for tests: an account with
// servers, each with its server API tokens, and account API tokens.
//
// It implements what the postmark driver calls, as Postmark's reference
// documents it:
// https://postmarkapp.com/developer/api/overview (X-Postmark-Server-Token /
// X-Postmark-Account-Token, 401 with {"ErrorCode": 10, "Message": ...} for
// a wrong or missing token),
// https://postmarkapp.com/developer/api/server-api (GET /server) and
// https://postmarkapp.com/developer/api/servers-api (GET /servers with the
// required count and offset, answered {"TotalCount", "Servers"}).
//
// Its 401 message quotes the token it refused, which Postmark's does not:
// that proves the driver never copies a message carrying a token into its
// errors.
package postmarkfake

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"sync"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
)

// MaxCount is Postmark's largest count of one servers page.
const MaxCount = 500

// Server is the fake Postmark API.
type Server struct {
	providertest.Base

	mu            sync.Mutex
	servers       []*pmServer
	accountTokens map[string]bool
	nextID        int64
}

// pmServer is one Postmark server and its live API tokens.
type pmServer struct {
	ID     int64
	Name   string
	tokens []string
}

// New starts the fake on 127.0.0.1.
func New() *Server {
	s := &Server{accountTokens: map[string]bool{}, nextID: 1000}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /server", s.getServer)
	mux.HandleFunc("GET /servers", s.listServers)
	s.Serve(mux)
	return s
}

// AddServer adds a server with one new token and returns the token as the
// engine stores it (Postmark tokens have no id).
func (s *Server) AddServer(name string) provider.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	srv := &pmServer{ID: s.nextID, Name: name, tokens: []string{newToken()}}
	s.servers = append(s.servers, srv)
	return provider.Key{Name: name, Secret: srv.tokens[0]}
}

// AddToken is "Generate another token" on the named server's API Tokens
// tab; it panics when there is no such server (a broken test).
func (s *Server) AddToken(serverName string) provider.Key {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, srv := range s.servers {
		if srv.Name == serverName {
			tok := newToken()
			srv.tokens = append(srv.tokens, tok)
			return provider.Key{Name: serverName, Secret: tok}
		}
	}
	panic(fmt.Sprintf("postmarkfake: no server %q", serverName))
}

// AddAccountToken adds an account API token and returns it.
func (s *Server) AddAccountToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	tok := newToken()
	s.accountTokens[tok] = true
	return tok
}

// RevokeToken revokes a server or account token, as regenerating or
// deleting it in Postmark's console does.
func (s *Server) RevokeToken(secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.accountTokens, secret)
	for _, srv := range s.servers {
		kept := srv.tokens[:0]
		for _, t := range srv.tokens {
			if t != secret {
				kept = append(kept, t)
			}
		}
		srv.tokens = kept
	}
}

// Live returns the server tokens the fake accepts, sorted.
func (s *Server) Live() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, srv := range s.servers {
		out = append(out, srv.tokens...)
	}
	sort.Strings(out)
	return out
}

// serverByToken is the server whose token tok is, or nil.
func (s *Server) serverByToken(tok string) *pmServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, srv := range s.servers {
		for _, t := range srv.tokens {
			if t != "" && t == tok {
				return srv
			}
		}
	}
	return nil
}

// serverJSON is the part of Postmark's server object the fake answers.
type serverJSON struct {
	ID        int64
	Name      string
	ApiTokens []string
	Color     string
}

func (s *Server) getServer(w http.ResponseWriter, r *http.Request) {
	if s.Intercept("test", w, r, s.writeFault) {
		return
	}
	tok := r.Header.Get("X-Postmark-Server-Token")
	srv := s.serverByToken(tok)
	if srv == nil {
		writeBadToken(w, "X-Postmark-Server-Token", tok)
		return
	}
	s.mu.Lock()
	out := serverJSON{ID: srv.ID, Name: srv.Name, ApiTokens: append([]string(nil), srv.tokens...), Color: "blue"}
	s.mu.Unlock()
	providertest.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) listServers(w http.ResponseWriter, r *http.Request) {
	if s.Intercept("list", w, r, s.writeFault) {
		return
	}
	tok := r.Header.Get("X-Postmark-Account-Token")
	s.mu.Lock()
	ok := tok != "" && s.accountTokens[tok]
	s.mu.Unlock()
	if !ok {
		writeBadToken(w, "X-Postmark-Account-Token", tok)
		return
	}
	count, cerr := strconv.Atoi(r.URL.Query().Get("count"))
	offset, oerr := strconv.Atoi(r.URL.Query().Get("offset"))
	if cerr != nil || oerr != nil || count < 1 || count > MaxCount || offset < 0 {
		// The reference makes count (at most 500) and offset required but
		// does not give the error code of a request without them.
		providertest.WriteJSON(w, http.StatusUnprocessableEntity, errorJSON{ErrorCode: 0, Message: "count (1..500) and offset are required query parameters."})
		return
	}
	providertest.WriteJSON(w, http.StatusOK, s.page(count, offset))
}

// page is one page of the account's servers.
func (s *Server) page(count, offset int) any {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := struct {
		TotalCount int
		Servers    []serverJSON
	}{TotalCount: len(s.servers), Servers: []serverJSON{}}
	for i := offset; i < len(s.servers) && i < offset+count; i++ {
		srv := s.servers[i]
		out.Servers = append(out.Servers, serverJSON{ID: srv.ID, Name: srv.Name, ApiTokens: append([]string(nil), srv.tokens...), Color: "blue"})
	}
	return out
}

type errorJSON struct {
	ErrorCode int
	Message   string
}

// writeBadToken is Postmark's 401 with error code 10; the message quotes
// the refused token on purpose (see the package comment).
func writeBadToken(w http.ResponseWriter, header, tok string) {
	msg := "No Account or Server API tokens were supplied in the HTTP headers. Please add a header for either " + header + "."
	if tok != "" {
		msg = fmt.Sprintf("The token %q supplied in %s is not valid.", tok, header)
	}
	providertest.WriteJSON(w, http.StatusUnauthorized, errorJSON{ErrorCode: 10, Message: msg})
}

// writeFault answers an injected status in Postmark's error shape.
func (s *Server) writeFault(w http.ResponseWriter, status int) {
	code := 0
	switch status {
	case http.StatusUnauthorized:
		code = 10
	case http.StatusTooManyRequests:
		code = 429
	}
	providertest.WriteJSON(w, status, errorJSON{ErrorCode: code, Message: http.StatusText(status)})
}

// newToken is a token shaped like Postmark's (a UUID).
func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
