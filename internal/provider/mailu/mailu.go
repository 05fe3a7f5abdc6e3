// Package mailu sets mailbox passwords through Mailu's admin API, for the
// SMTP secrets whose mailboxes live on a tenant's Mailu server.
//
// It follows Mailu's API as its source defines it (Mailu/Mailu,
// core/admin/mailu/api/v1/user.py and core/admin/mailu/api/common.py; docs
// at https://mailu.io/master/api.html): PATCH {WEB_API}/v1/user/{email}
// with the JSON model UserUpdate, whose raw_password Mailu hashes itself,
// authenticated by the API_TOKEN of mailu.env in the Authorization header.
// Mailu accepts that header as "Bearer <token>" (the current source strips
// a "Bearer " prefix; older releases required it whenever the header had a
// space), so the driver sends "Bearer <token>". Answers: 200 {"code",
// "message"} on success, 400 for an invalid address or body, 401 without
// the header, 403 for a wrong token, 404 for an unknown user, 429 when
// Mailu rate-limits the client's IP.
package mailu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// Name is the provider's name in errors.
const Name = "mailu"

// ErrNoSuchUser is wrapped by SetPassword when Mailu has no such mailbox
// (404).
var ErrNoSuchUser = errors.New("no such user")

// Server is one Mailu admin API.
type Server struct {
	base  string
	token string
	http  *http.Client
}

var _ provider.MailServer = (*Server)(nil)

// New checks and keeps Mailu's API root and token. baseURL is required:
// Mailu runs on the tenant's own server, its API at https://{host}/api
// (WEB_API); it must pass provider.CheckBaseURL. A nil client is one with
// provider.DefaultTimeout.
func New(baseURL, apiToken string, client *http.Client) (*Server, error) {
	if baseURL == "" {
		return nil, errors.New("base_url is required: Mailu's API root, e.g. https://mail.example.com/api")
	}
	if _, err := provider.CheckBaseURL(baseURL); err != nil {
		return nil, fmt.Errorf("base_url %w", err)
	}
	if apiToken == "" {
		return nil, errors.New("api_token is required: the API_TOKEN of Mailu's mailu.env")
	}
	if client == nil {
		client = provider.Endpoint{}.Client()
	}
	return &Server{base: baseURL, token: apiToken, http: client}, nil
}

// SetPassword makes password the password of the mailbox email (PATCH
// /v1/user/{email} {"raw_password": password}). An unknown mailbox is an
// error wrapping ErrNoSuchUser.
func (s *Server) SetPassword(ctx context.Context, email, password string) error {
	const op = "set password"
	if err := checkEmail(email); err != nil {
		return &provider.Error{Provider: Name, Op: op, Err: err}
	}
	if password == "" {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("the password is empty")}
	}
	body, _ := json.Marshal(map[string]string{"raw_password": password})
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, provider.Join(s.base, "/v1/user/"+url.PathEscape(email)), bytes.NewReader(body))
	if err != nil {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("cannot build the request")}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := s.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return &provider.Error{Provider: Name, Op: op, Err: err}
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	return s.refusal(op, email, resp, answer, password)
}

// refusal is the *provider.Error of a non-200 answer: Mailu's message
// when it carries neither the password nor the token, and ErrNoSuchUser
// on 404.
func (s *Server) refusal(op, email string, resp *http.Response, answer []byte, password string) error {
	pe := &provider.Error{Provider: Name, Op: op, Status: resp.StatusCode, RetryAfter: provider.RetryAfter(resp.Header)}
	var out struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(answer, &out) == nil {
		pe.Code = safeMessage(out.Message, password, s.token)
	}
	switch resp.StatusCode {
	case http.StatusNotFound:
		pe.Err = fmt.Errorf("%w %s on the Mailu server", ErrNoSuchUser, email)
	case http.StatusUnauthorized, http.StatusForbidden:
		pe.Err = errors.New("Mailu does not accept the API token")
	}
	return pe
}

// safeMessage is msg cut to 200 characters, or "" when it carries one of
// the secrets (Mailu's validation errors quote the values they refuse).
func safeMessage(msg string, secrets ...string) string {
	msg = strings.TrimSpace(msg)
	for _, s := range secrets {
		if s != "" && strings.Contains(msg, s) {
			return ""
		}
	}
	if r := []rune(msg); len(r) > 200 {
		msg = string(r[:200])
	}
	return msg
}

// checkEmail refuses what cannot be a mailbox address in Mailu's URL: no
// local part or domain, or a slash, which Mailu's route does not match.
func checkEmail(email string) error {
	at := strings.LastIndex(email, "@")
	if at < 1 || at == len(email)-1 || strings.ContainsAny(email, "/ \t\r\n") {
		return fmt.Errorf("email %q is not a mailbox address (local@domain)", email)
	}
	return nil
}
