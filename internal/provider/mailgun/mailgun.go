// Package mailgun is the driver for Mailgun API keys (the Keys API).
//
// It follows the reference:
// https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/keys/post-v1-keys
// https://documentation.mailgun.com/docs/mailgun/api-reference/send/mailgun/keys/get-v1-keys
// https://documentation.mailgun.com/docs/mailgun/api-reference/openapi-final/tag/Keys
// https://documentation.mailgun.com/docs/mailgun/api-reference/authentication
package mailgun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// Name is the provider's name in errors.
const Name = "mailgun"

// Regions are Mailgun's API regions.
var Regions = regions.Names()

var regions = provider.Regions{Provider: "Mailgun", List: []provider.Region{
	{Name: "us", URL: "https://api.mailgun.net"},
	{Name: "eu", URL: "https://api.eu.mailgun.net"},
}}

// Roles are the key roles the Keys API accepts ("basic" stands in for the
// former analyst; "sending" goes with keys of domain kind).
var Roles = []string{"admin", "basic", "sending", "developer"}

// DefaultBaseURL is Mailgun's public API root for region ("" is us).
func DefaultBaseURL(region string) (string, error) { return regions.BaseURL(region) }

// Driver mints, tests and deletes Mailgun API keys. Create and Delete
// authenticate with the Endpoint's Auth.Secret (a key whose role may
// manage keys: admin); Test with the key it tests.
type Driver struct {
	base string
	auth string
	http *http.Client
}

var (
	_ provider.Driver = (*Driver)(nil)
	_ provider.Finder = (*Driver)(nil)
)

// New checks the endpoint: its region must be a Mailgun region and its
// BaseURL (default: the region's public URL) must pass
// provider.CheckBaseURL.
func New(ep provider.Endpoint) (*Driver, error) {
	base, err := regions.Base(ep)
	if err != nil {
		return nil, err
	}
	return &Driver{base: base, auth: ep.Auth.Secret, http: ep.Client()}, nil
}

// keyJSON is the key object of the Keys API; secret is in the create
// answer only.
type keyJSON struct {
	ID          string  `json:"id"`
	Secret      string  `json:"secret"`
	Description string  `json:"description"`
	Kind        string  `json:"kind"`
	Role        string  `json:"role"`
	DomainName  *string `json:"domain_name"`
	CreatedAt   string  `json:"created_at"`
}

// timeLayout is the Keys API's created_at: ISO 8601 in UTC without an
// offset, to the second.
const timeLayout = "2006-01-02T15:04:05"

// Create mints a key like the given one (POST /v1/keys, multipart form):
// role like.Role (required, one of Roles), kind "domain" with domain_name
// like.Domain when the key belongs to a domain, else kind "user", and
// description like.Name.
func (d *Driver) Create(ctx context.Context, like provider.Key) (provider.Key, error) {
	const op = "create key"
	fields, err := createFields(like)
	if err != nil {
		return provider.Key{}, &provider.Error{Provider: Name, Op: op, Err: err}
	}
	body, contentType := multipartBody(fields)
	var out struct {
		Key keyJSON `json:"key"`
	}
	if err := d.call(ctx, op, http.MethodPost, "/v1/keys", d.auth, body, contentType, &out, like.Secret); err != nil {
		return provider.Key{}, err
	}
	if out.Key.ID == "" || out.Key.Secret == "" {
		return provider.Key{}, &provider.Error{Provider: Name, Op: op, Status: http.StatusOK, Err: errors.New("the answer has no key id or secret")}
	}
	k := provider.Key{ID: out.Key.ID, Secret: out.Key.Secret, Name: out.Key.Description, Role: out.Key.Role}
	if out.Key.DomainName != nil {
		k.Domain = *out.Key.DomainName
	}
	return k, nil
}

// createFields are the form fields of a key like the given one, in a fixed
// order.
func createFields(like provider.Key) ([][2]string, error) {
	if like.Role == "" {
		return nil, fmt.Errorf("role is required: one of %s", strings.Join(Roles, ", "))
	}
	known := false
	for _, r := range Roles {
		known = known || r == like.Role
	}
	if !known {
		return nil, fmt.Errorf("role %q is not a Mailgun key role: use one of %s", like.Role, strings.Join(Roles, ", "))
	}
	if like.Role == "sending" && like.Domain == "" {
		return nil, errors.New("domain is required for a key of role sending")
	}
	fields := [][2]string{{"role", like.Role}}
	if like.Domain != "" {
		fields = append(fields, [2]string{"kind", "domain"}, [2]string{"domain_name", like.Domain})
	} else {
		fields = append(fields, [2]string{"kind", "user"})
	}
	if like.Name != "" {
		fields = append(fields, [2]string{"description", like.Name})
	}
	return fields, nil
}

// multipartBody encodes fields as multipart/form-data, the Keys API's
// documented request body.
func multipartBody(fields [][2]string) ([]byte, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		_ = mw.WriteField(f[0], f[1])
	}
	_ = mw.Close()
	return buf.Bytes(), mw.FormDataContentType()
}

// Test makes one authenticated call with k that changes nothing.
//
// A domain key (k.Domain set; role sending) may only send messages for its
// domain (authentication reference: "Domain Sending Keys ... only allow
// sending messages via a POST call on /messages and /messages.mime"). So
// Test posts an empty form to /v3/{domain}/messages: Mailgun refuses a bad
// key with 401 before it reads the form, and answers a good one 400 ("from
// parameter is missing"), sending nothing. That 400 is the proof of a
// valid key. Any other key reads one domain: GET /v3/domains?limit=1.
func (d *Driver) Test(ctx context.Context, k provider.Key) error {
	const op = "test key"
	if k.Secret == "" {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("the key has no secret")}
	}
	if k.Domain == "" {
		var out struct {
			TotalCount int `json:"total_count"`
		}
		return d.call(ctx, op, http.MethodGet, "/v3/domains?limit=1", k.Secret, nil, "", &out)
	}
	body, contentType := multipartBody(nil)
	err := d.call(ctx, op, http.MethodPost, "/v3/"+url.PathEscape(k.Domain)+"/messages", k.Secret, body, contentType, nil)
	if pe := (*provider.Error)(nil); errors.As(err, &pe) && pe.Status == http.StatusBadRequest {
		return nil // authenticated; the empty form was refused, nothing sent
	}
	return err
}

// Delete deletes the key with k.ID (DELETE /v1/keys/{id}); a key that is
// already gone (404) is success.
func (d *Driver) Delete(ctx context.Context, k provider.Key) error {
	const op = "delete key"
	if k.ID == "" {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("the key has no id")}
	}
	err := d.call(ctx, op, http.MethodDelete, "/v1/keys/"+url.PathEscape(k.ID), d.auth, nil, "", nil, k.Secret)
	var pe *provider.Error
	if errors.As(err, &pe) && pe.Status == http.StatusNotFound {
		return nil
	}
	return err
}

// Find returns the id of the one key like describes that is not in held:
// a key Create made whose id the engine lost. It lists the keys of like's
// kind (GET /v1/keys?kind=user, or kind=domain&domain_name=like.Domain) and
// matches the description to like.Name exactly, the domain, and, when
// created_at parses, a creation at or after since (to the second, as
// Mailgun records it). Two such keys are an error; the driver never
// guesses which to remove.
func (d *Driver) Find(ctx context.Context, like provider.Key, since time.Time, held []string) (string, bool, error) {
	const op = "find key"
	if like.Name == "" {
		return "", false, &provider.Error{Provider: Name, Op: op, Err: errors.New("name is required: Mailgun keys are found by description")}
	}
	keys, err := d.listKeys(ctx, op, like.Domain)
	if err != nil {
		return "", false, err
	}
	var found []string
	for _, k := range keys {
		if k.ID != "" && !slices.Contains(held, k.ID) && isLike(k, like, since) {
			found = append(found, k.ID)
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
		Err: fmt.Errorf("keys %s are not held by the engine and share the description %q: remove the stray ones by hand", strings.Join(found, ", "), like.Name)}
}

// listKeys lists the account's keys of the kind Create makes for domain:
// user keys when it is empty, else that domain's keys. The Keys API
// returns them all in one answer (no paging).
func (d *Driver) listKeys(ctx context.Context, op, domain string) ([]keyJSON, error) {
	q := url.Values{"kind": {"user"}}
	if domain != "" {
		q = url.Values{"kind": {"domain"}, "domain_name": {domain}}
	}
	var out struct {
		Items      []keyJSON `json:"items"`
		TotalCount int       `json:"total_count"`
	}
	if err := d.call(ctx, op, http.MethodGet, "/v1/keys?"+q.Encode(), d.auth, nil, "", &out); err != nil {
		return nil, err
	}
	return out.Items, nil
}

// isLike reports whether the listed key k is one Create made for like
// since since. The domain is checked again though the query filtered it:
// a filter the API ignored must not widen the match.
func isLike(k keyJSON, like provider.Key, since time.Time) bool {
	domain := ""
	if k.DomainName != nil {
		domain = *k.DomainName
	}
	if k.Description != like.Name || domain != like.Domain {
		return false
	}
	created, err := time.ParseInLocation(timeLayout, k.CreatedAt, time.UTC)
	if err != nil || since.IsZero() {
		return true // no usable time: the unique name is the mark
	}
	return !created.Before(since.UTC().Truncate(time.Second))
}

// call makes one request authenticated as user "api" with password key,
// expects 200 and decodes the JSON answer into out (nil: ignore it). Any
// other answer is a *provider.Error whose code is Mailgun's message, unless
// the body is not JSON (Mailgun answers 401 with plain "Forbidden") or the
// message could carry a secret.
func (d *Driver) call(ctx context.Context, op, method, path, key string, body []byte, contentType string, out any, secrets ...string) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, provider.Join(d.base, path), rd)
	if err != nil {
		return &provider.Error{Provider: Name, Op: op, Err: errors.New("cannot build the request")}
	}
	req.SetBasicAuth("api", key)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
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
	if resp.StatusCode != http.StatusOK {
		return &provider.Error{Provider: Name, Op: op, Status: resp.StatusCode,
			Code:       errorMessage(raw, append(secrets, key)...),
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

// transportError names a failed call without anything the transport may
// quote: the context's error when it ended, else a generic one.
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

// errorMessage is the message of Mailgun's error JSON {"message": "..."},
// or "" when the body is not that JSON or the message could echo a secret.
func errorMessage(raw []byte, secrets ...string) string {
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(raw, &e) != nil {
		return ""
	}
	return provider.SafeMessage(e.Message, secrets...)
}
