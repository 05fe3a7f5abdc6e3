// Package postmark is the driver for Postmark server API tokens.
//
// Postmark has no API that mints or revokes server tokens: they are made
// ("Generate another token") and revoked on a server's API Tokens tab in
// Postmark's console. So Create returns provider.ErrManual (the operator
// supplies the new token), Test proves a token with one read of its own
// server, and Delete does nothing: the old token must be revoked in the
// console once its successor is in use.
//
// It follows Postmark's API reference:
// https://postmarkapp.com/developer/api/overview (authentication headers,
// 401 for a wrong or missing token, the {"ErrorCode", "Message"} error
// body, error code 10 "Bad or missing API token"),
// https://postmarkapp.com/developer/api/server-api (GET /server with
// X-Postmark-Server-Token) and
// https://postmarkapp.com/developer/api/servers-api (GET /servers?count=&offset=
// with X-Postmark-Account-Token).
package postmark

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// Name is the provider's name in errors.
const Name = "postmark"

// ErrorCodeBadToken is Postmark's API error code for a bad or missing API
// token.
const ErrorCodeBadToken = 10

// Regions are Postmark's API regions: it has one.
var Regions = regions.Names()

var regions = provider.Regions{Provider: "Postmark", List: []provider.Region{{Name: "global", URL: "https://api.postmarkapp.com"}}}

// DefaultBaseURL is Postmark's public API root ("" is global).
func DefaultBaseURL(region string) (string, error) { return regions.BaseURL(region) }

// Driver tests Postmark server tokens. It mints and revokes none (see the
// package comment).
type Driver struct {
	base string
	http *http.Client
}

var _ provider.Driver = (*Driver)(nil)

// New checks the endpoint: its region must be Postmark's and its BaseURL
// (default: Postmark's public URL) must pass provider.CheckBaseURL. The
// endpoint's Auth is not used: no Postmark call of the driver needs more
// than the token it tests.
func New(ep provider.Endpoint) (*Driver, error) {
	base, err := regions.Base(ep)
	if err != nil {
		return nil, err
	}
	return &Driver{base: base, http: ep.Client()}, nil
}

// Create returns an error wrapping provider.ErrManual: Postmark server
// tokens are generated in its console only.
func (d *Driver) Create(ctx context.Context, like provider.Key) (provider.Key, error) {
	return provider.Key{}, &provider.Error{Provider: Name, Op: "create key",
		Err: fmt.Errorf("%w (generate a server token on the server's API Tokens tab in Postmark)", provider.ErrManual)}
}

// Test reads the configuration of k's own server (GET /server with
// X-Postmark-Server-Token): every server token may, and it changes nothing.
func (d *Driver) Test(ctx context.Context, k provider.Key) error {
	const op = "test key"
	if k.Secret == "" {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("the key has no server token")}
	}
	var out struct {
		ID   int64
		Name string
	}
	return d.get(ctx, op, "/server", "X-Postmark-Server-Token", k.Secret, &out)
}

// Delete does nothing and succeeds: Postmark has no API that revokes a
// server token. The operator revokes the old token on the server's API
// Tokens tab in Postmark's console.
func (d *Driver) Delete(ctx context.Context, k provider.Key) error { return nil }

// TestAccount checks an account API token (the optional account_token) by
// listing at most one of the account's servers (GET
// /servers?count=1&offset=0 with X-Postmark-Account-Token).
func (d *Driver) TestAccount(ctx context.Context, accountToken string) error {
	const op = "test account token"
	if accountToken == "" {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("the account token is empty")}
	}
	var out struct {
		TotalCount int
	}
	return d.get(ctx, op, "/servers?count=1&offset=0", "X-Postmark-Account-Token", accountToken, &out)
}

// errorBody is Postmark's error answer.
type errorBody struct {
	ErrorCode int
	Message   string
}

// get makes one GET authenticated by token in header, expects 200 and
// decodes the JSON answer into out. Any other answer is a *provider.Error
// with Postmark's error code and, unless it could carry the token, its
// message.
func (d *Driver) get(ctx context.Context, op, path, header, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, provider.Join(d.base, path), nil)
	if err != nil {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("cannot build the request")}
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set(header, token)
	resp, err := d.http.Do(req)
	if err != nil {
		return &provider.Error{Provider: Name, Op: op, Err: transportError(ctx, err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var pmErr errorBody
	decodeErr := json.Unmarshal(body, &pmErr)
	if resp.StatusCode == http.StatusOK && (decodeErr != nil || pmErr.ErrorCode == 0) {
		if err := json.Unmarshal(body, out); err != nil {
			return &provider.Error{Provider: Name, Op: op, Status: resp.StatusCode, Err: errors.New("the answer is not the documented JSON")}
		}
		return nil
	}
	pe := &provider.Error{Provider: Name, Op: op, Status: resp.StatusCode, RetryAfter: provider.RetryAfter(resp.Header)}
	if decodeErr == nil {
		pe.Code = errorCode(pmErr, token)
	}
	if resp.StatusCode == http.StatusUnauthorized || pmErr.ErrorCode == ErrorCodeBadToken {
		pe.Err = errors.New("Postmark does not accept the token")
	}
	return pe
}

// errorCode is "ErrorCode n: message", without the message when it
// carries the token, cut to 200 characters.
func errorCode(e errorBody, token string) string {
	code := fmt.Sprintf("ErrorCode %d", e.ErrorCode)
	msg := strings.TrimSpace(e.Message)
	if msg == "" || strings.Contains(msg, token) {
		return code
	}
	if r := []rune(msg); len(r) > 200 {
		msg = string(r[:200])
	}
	return code + ": " + msg
}

// transportError is the context's error when it ended (cancelled,
// deadline), else the transport's error: the token travels in a header,
// never in the URL that the error names.
func transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
