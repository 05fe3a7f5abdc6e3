// Package sendgrid is the driver for SendGrid v3 API keys.
//
// It follows the API Keys reference:
// https://twilio.com/docs/sendgrid/api-reference/api-keys/create-api-keys
// https://twilio.com/docs/sendgrid/api-reference/api-keys/retrieve-an-existing-api-key
// https://twilio.com/docs/sendgrid/api-reference/api-keys/retrieve-all-api-keys-belonging-to-the-authenticated-user
// and the scopes endpoint that Test calls:
// https://twilio.com/docs/sendgrid/api-reference/api-key-permissions/retrieve-a-list-of-scopes-for-which-this-user-has-access
package sendgrid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// Name is the provider's name in errors.
const Name = "sendgrid"

// MaxKeys is SendGrid's limit of API keys per account ("There is a limit of
// 100 API Keys on your account", create-api-keys reference).
const MaxKeys = 100

// Regions are SendGrid's API regions: "global" for global users and
// subusers, "eu" for EU regional subusers.
var Regions = regions.Names()

var regions = provider.Regions{Provider: "SendGrid", List: []provider.Region{
	{Name: "global", URL: "https://api.sendgrid.com"},
	{Name: "eu", URL: "https://api.eu.sendgrid.com"},
}}

// DefaultBaseURL is SendGrid's public API root for region ("" is global).
func DefaultBaseURL(region string) (string, error) { return regions.BaseURL(region) }

// Driver mints, tests and deletes SendGrid API keys. Create, Delete and
// Describe authenticate with the Endpoint's Auth.Secret; Test with the key
// it tests.
type Driver struct {
	base string
	auth string
	http *http.Client
}

var (
	_ provider.Driver = (*Driver)(nil)
	_ provider.Finder = (*Driver)(nil)
)

// New checks the endpoint: its region must be a SendGrid region and its
// BaseURL (default: the region's public URL) must pass
// provider.CheckBaseURL.
func New(ep provider.Endpoint) (*Driver, error) {
	base, err := regions.Base(ep)
	if err != nil {
		return nil, err
	}
	return &Driver{base: base, auth: ep.Auth.Secret, http: ep.Client()}, nil
}

// keyJSON is SendGrid's API key object: the create answer carries api_key
// (the secret) once; reads carry only the id, name and scopes.
type keyJSON struct {
	APIKey   string   `json:"api_key,omitempty"`
	APIKeyID string   `json:"api_key_id"`
	Name     string   `json:"name"`
	Scopes   []string `json:"scopes,omitempty"`
}

// createBody is the create request. Scopes are omitted when like has none:
// SendGrid then creates the key with full access (create-api-keys
// reference: scopes is optional, name is the one required field).
type createBody struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes,omitempty"`
}

// Create mints a key with like's name and scopes. At SendGrid's limit of
// 100 keys it returns an error wrapping provider.ErrKeyLimit.
func (d *Driver) Create(ctx context.Context, like provider.Key) (provider.Key, error) {
	const op = "create key"
	if like.Name == "" {
		return provider.Key{}, &provider.Error{Provider: Name, Op: op, Err: errors.New("name is required: SendGrid names every API key")}
	}
	body, _ := json.Marshal(createBody{Name: like.Name, Scopes: like.Scopes})
	var out keyJSON
	err := d.call(ctx, op, http.MethodPost, "/v3/api_keys", d.auth, body, http.StatusCreated, &out, like.Secret)
	if err != nil {
		return provider.Key{}, d.keyLimit(ctx, err)
	}
	if out.APIKey == "" || out.APIKeyID == "" {
		return provider.Key{}, &provider.Error{Provider: Name, Op: op, Status: http.StatusCreated, Err: errors.New("the answer has no api_key or api_key_id")}
	}
	return provider.Key{ID: out.APIKeyID, Secret: out.APIKey, Name: out.Name, Scopes: out.Scopes}, nil
}

// keyLimit turns a 403 of create into ErrKeyLimit when the account holds
// MaxKeys keys. SendGrid documents the 403 at the limit but not its
// message, and 403 also means a key without api_keys.create, so the driver
// counts the keys instead of guessing from wording.
func (d *Driver) keyLimit(ctx context.Context, err error) error {
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Status != http.StatusForbidden {
		return err
	}
	n, cerr := d.countKeys(ctx)
	if cerr != nil || n < MaxKeys {
		return err
	}
	pe.Err = fmt.Errorf("%w: the account has %d API keys, SendGrid's maximum; delete unused keys first", provider.ErrKeyLimit, n)
	return pe
}

// countKeys counts the account's keys.
func (d *Driver) countKeys(ctx context.Context) (int, error) {
	keys, err := d.listKeys(ctx, "list keys")
	return len(keys), err
}

// listKeys lists the account's keys, ids and names only (GET
// /v3/api_keys?limit=100): the account holds at most MaxKeys, so one page
// is all of them.
func (d *Driver) listKeys(ctx context.Context, op string) ([]keyJSON, error) {
	var out struct {
		Result []keyJSON `json:"result"`
	}
	path := fmt.Sprintf("/v3/api_keys?limit=%d", MaxKeys)
	if err := d.call(ctx, op, http.MethodGet, path, d.auth, nil, http.StatusOK, &out); err != nil {
		return nil, err
	}
	return out.Result, nil
}

// Find returns the id of the one key named exactly like.Name whose id is
// not in held: a key Create made whose id the engine lost. since is not
// used: SendGrid's listing carries no creation time, so the name (which the
// engine makes unique per key) is the only mark. Two such keys are an
// error; the driver never guesses which to remove.
func (d *Driver) Find(ctx context.Context, like provider.Key, since time.Time, held []string) (string, bool, error) {
	const op = "find key"
	if like.Name == "" {
		return "", false, &provider.Error{Provider: Name, Op: op, Err: errors.New("name is required: SendGrid keys are found by name")}
	}
	keys, err := d.listKeys(ctx, op)
	if err != nil {
		return "", false, err
	}
	var found []string
	for _, k := range keys {
		if k.Name == like.Name && k.APIKeyID != "" && !slices.Contains(held, k.APIKeyID) {
			found = append(found, k.APIKeyID)
		}
	}
	switch len(found) {
	case 0:
		return "", false, nil
	case 1:
		return found[0], true, nil
	}
	// Status is the listing's 200: the provider answered, and the answer
	// stays ambiguous until someone acts, so this is no Temporary error.
	sort.Strings(found)
	return "", false, &provider.Error{Provider: Name, Op: op, Status: http.StatusOK,
		Err: fmt.Errorf("keys %s are not held by the engine and share the name %q: remove the stray ones by hand", strings.Join(found, ", "), like.Name)}
}

// Test reads the scopes of k itself (GET /v3/scopes): every valid key may,
// whatever its scopes, and it changes nothing.
func (d *Driver) Test(ctx context.Context, k provider.Key) error {
	const op = "test key"
	if k.Secret == "" {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("the key has no secret")}
	}
	var out struct {
		Scopes []string `json:"scopes"`
	}
	return d.call(ctx, op, http.MethodGet, "/v3/scopes", k.Secret, nil, http.StatusOK, &out)
}

// Delete deletes the key with k.ID (DELETE /v3/api_keys/{id}); a key that
// is already gone (404) is success.
func (d *Driver) Delete(ctx context.Context, k provider.Key) error {
	const op = "delete key"
	if k.ID == "" {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("the key has no api_key_id")}
	}
	err := d.call(ctx, op, http.MethodDelete, "/v3/api_keys/"+url.PathEscape(k.ID), d.auth, nil, http.StatusNoContent, nil, k.Secret)
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// Describe reads the name and scopes of the key with id (GET
// /v3/api_keys/{id}), for a key the user gave by api_key_id only.
func (d *Driver) Describe(ctx context.Context, id string) (name string, scopes []string, err error) {
	const op = "describe key"
	if id == "" {
		return "", nil, &provider.Error{Provider: Name, Op: op, Err: errors.New("api_key_id is required")}
	}
	var out keyJSON
	if err := d.call(ctx, op, http.MethodGet, "/v3/api_keys/"+url.PathEscape(id), d.auth, nil, http.StatusOK, &out); err != nil {
		return "", nil, err
	}
	scopes = append([]string(nil), out.Scopes...)
	sort.Strings(scopes)
	return out.Name, scopes, nil
}

// call makes one request with bearer authenticated by secret, expects
// status want and decodes the JSON answer into out (nil: no body). Any
// other answer is a *provider.Error whose code is SendGrid's first error
// message, unless that message could carry one of the secrets.
func (d *Driver) call(ctx context.Context, op, method, path, bearer string, body []byte, want int, out any, secrets ...string) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, provider.Join(d.base, path), rd)
	if err != nil {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("cannot build the request")}
	}
	req.Header.Set("Authorization", "Bearer "+bearer)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return &provider.Error{Provider: Name, Op: op, Err: transportError(ctx, err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return &provider.Error{Provider: Name, Op: op, Status: resp.StatusCode, Err: errors.New("cannot read the answer")}
	}
	if resp.StatusCode != want {
		return &provider.Error{Provider: Name, Op: op, Status: resp.StatusCode,
			Code:       errorMessage(raw, append(secrets, bearer)...),
			RetryAfter: provider.RetryAfter(resp.Header)}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return &provider.Error{Provider: Name, Op: op, Status: resp.StatusCode, Err: errors.New("the answer is not the documented JSON")}
	}
	return nil
}

// transportError names a failed call without the URL or anything the
// transport may quote: the context's error when it ended, else a generic
// one.
func transportError(ctx context.Context, err error) error {
	if ctxErr := ctx.Err(); ctxErr != nil {
		return ctxErr
	}
	var ue *url.Error
	if errors.As(err, &ue) && ue.Timeout() {
		return errors.New("no answer in time")
	}
	return errors.New("no answer from the provider")
}

// errorMessage is the first message of SendGrid's error JSON
// {"errors":[{"field":..., "message":...}]}, or "" when the body is not
// that JSON or the message could echo a secret.
func errorMessage(raw []byte, secrets ...string) string {
	var e struct {
		Errors []struct {
			Field   *string `json:"field"`
			Message string  `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(raw, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	msg := e.Errors[0].Message
	if f := e.Errors[0].Field; f != nil && *f != "" {
		msg = *f + ": " + msg
	}
	return provider.SafeMessage(msg, secrets...)
}
