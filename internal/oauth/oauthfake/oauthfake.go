// Package oauthfake is an OAuth 2.0 authorization server's token endpoint
// for tests, following RFC 6749 (sections 4.1.3, 5.1, 5.2 and 6) and RFC
// 7636 (PKCE): grant_type refresh_token and authorization_code, client
// authentication by HTTP Basic or in the form body, rotating refresh
// tokens, answers with or without expires_in, invalid_grant for a refresh
// token it no longer honours, and the faults of providertest (500s, 429
// with Retry-After, hangs). It counts every token request.
package oauthfake

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
)

// Server is the fake authorization server.
type Server struct {
	providertest.Base

	mu sync.Mutex
	// ClientID and ClientSecret are the one registered client.
	clientID, clientSecret string
	// authStyle is "header", "params" or "" (both accepted).
	authStyle string
	refresh   map[string]bool  // refresh tokens honoured
	access    map[string]bool  // access tokens issued
	codes     map[string]grant // authorization codes not yet redeemed
	rotate    bool             // each refresh issues a new refresh token
	noExpiry  bool             // answers omit expires_in
	expiresIn int              // seconds
	delay     time.Duration    // every answer waits this long
	scope     string           // scope returned in answers
	issued    []string         // every token and code handed out, for leak checks
}

type grant struct {
	redirectURI, challenge string
}

// New starts the server with a client.
func New(clientID, clientSecret string) *Server {
	s := &Server{clientID: clientID, clientSecret: clientSecret, refresh: map[string]bool{}, access: map[string]bool{},
		codes: map[string]grant{}, expiresIn: 3600}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.token)
	s.Serve(mux)
	return s
}

// TokenURL is the token endpoint.
func (s *Server) TokenURL() string { return s.URL() + "/token" }

// RequireAuthStyle makes the server accept client credentials only in the
// header ("header") or only in the body ("params").
func (s *Server) RequireAuthStyle(style string) { s.set(func() { s.authStyle = style }) }

// RotateRefreshTokens makes every refresh issue a new refresh token and
// retire the one used.
func (s *Server) RotateRefreshTokens(on bool) { s.set(func() { s.rotate = on }) }

// OmitExpiresIn makes answers leave out expires_in.
func (s *Server) OmitExpiresIn(on bool) { s.set(func() { s.noExpiry = on }) }

// ExpiresIn sets the lifetime of issued access tokens.
func (s *Server) ExpiresIn(secs int) { s.set(func() { s.expiresIn = secs }) }

// Delay makes every answer wait d (a slow server).
func (s *Server) Delay(d time.Duration) { s.set(func() { s.delay = d }) }

// Scope sets the scope field of answers.
func (s *Server) Scope(scope string) { s.set(func() { s.scope = scope }) }

func (s *Server) set(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f()
}

// IssueRefreshToken returns a refresh token the server honours.
func (s *Server) IssueRefreshToken() string {
	t := "rt-" + random()
	s.set(func() { s.refresh[t] = true; s.issued = append(s.issued, t) })
	return t
}

// Revoke makes the server refuse a refresh token with invalid_grant.
func (s *Server) Revoke(refreshToken string) { s.set(func() { delete(s.refresh, refreshToken) }) }

// IssueCode returns an authorization code as after the user's consent at
// an authorization URL with redirectURI and PKCE challenge (S256; empty
// for none).
func (s *Server) IssueCode(redirectURI, challenge string) string {
	c := "code-" + random()
	s.set(func() {
		s.codes[c] = grant{redirectURI: redirectURI, challenge: challenge}
		s.issued = append(s.issued, c)
	})
	return c
}

// Issued lists every token and code the server handed out (access and
// refresh tokens, authorization codes), so that a test can check none of
// them leaked.
func (s *Server) Issued() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.issued...)
}

// ValidAccess reports whether an access token was issued by the server.
func (s *Server) ValidAccess(token string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.access[token]
}

// Honoured reports whether the server still honours a refresh token.
func (s *Server) Honoured(refreshToken string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.refresh[refreshToken]
}

// TokenRequests counts the requests the token endpoint got.
func (s *Server) TokenRequests() int { return len(s.Requests("")) }

func random() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	peek, _ := providertest.PeekForm(r)
	op := peek.Get("grant_type")
	if s.Intercept(op, w, r, func(w http.ResponseWriter, status int) { s.writeError(w, status, "temporarily_unavailable") }) {
		return
	}
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		s.writeError(w, http.StatusBadRequest, "invalid_request")
		return
	}
	s.mu.Lock()
	delay := s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if !s.clientOK(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="token"`)
		s.writeError(w, http.StatusUnauthorized, "invalid_client")
		return
	}
	switch op {
	case "refresh_token":
		s.refreshGrant(w, r)
	case "authorization_code":
		s.codeGrant(w, r)
	default:
		s.writeError(w, http.StatusBadRequest, "unsupported_grant_type")
	}
}

// clientOK checks client authentication (RFC 6749 2.3.1): Basic with the
// form-encoded id and secret, or both in the body; never both at once.
func (s *Server) clientOK(r *http.Request) bool {
	s.mu.Lock()
	style := s.authStyle
	s.mu.Unlock()
	id, secret, basic := r.BasicAuth()
	inBody := r.PostForm.Get("client_secret") != ""
	switch {
	case basic && inBody:
		return false
	case basic:
		idU, _ := url.QueryUnescape(id)
		secretU, _ := url.QueryUnescape(secret)
		return style != "params" && idU == s.clientID && secretU == s.clientSecret
	default:
		return style != "header" && r.PostForm.Get("client_id") == s.clientID && r.PostForm.Get("client_secret") == s.clientSecret
	}
}

func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request) {
	rt := r.PostForm.Get("refresh_token")
	s.mu.Lock()
	ok := s.refresh[rt]
	next := ""
	if ok && s.rotate {
		delete(s.refresh, rt)
		next = "rt-" + random()
		s.refresh[next] = true
	}
	s.mu.Unlock()
	if !ok {
		s.writeError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	s.writeToken(w, next)
}

func (s *Server) codeGrant(w http.ResponseWriter, r *http.Request) {
	code := r.PostForm.Get("code")
	s.mu.Lock()
	g, ok := s.codes[code]
	delete(s.codes, code) // a code is redeemed once (RFC 6749 4.1.2)
	s.mu.Unlock()
	if !ok || g.redirectURI != r.PostForm.Get("redirect_uri") || !pkceOK(g.challenge, r.PostForm.Get("code_verifier")) {
		s.writeError(w, http.StatusBadRequest, "invalid_grant")
		return
	}
	rt := "rt-" + random()
	s.set(func() { s.refresh[rt] = true })
	s.writeToken(w, rt)
}

// pkceOK checks code_verifier against an S256 challenge (RFC 7636 4.6).
func pkceOK(challenge, verifier string) bool {
	if challenge == "" {
		return verifier == ""
	}
	sum := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(sum[:]) == challenge
}

func (s *Server) writeToken(w http.ResponseWriter, refreshToken string) {
	at := "at-" + random()
	s.mu.Lock()
	s.access[at] = true
	s.issued = append(s.issued, at)
	if refreshToken != "" {
		s.issued = append(s.issued, refreshToken)
	}
	body := map[string]interface{}{"access_token": at, "token_type": "Bearer"}
	if !s.noExpiry {
		body["expires_in"] = s.expiresIn
	}
	if s.scope != "" {
		body["scope"] = s.scope
	}
	s.mu.Unlock()
	if refreshToken != "" {
		body["refresh_token"] = refreshToken
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(body)
}

func (s *Server) writeError(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": "fake: " + code})
}
