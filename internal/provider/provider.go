// Package provider is the one interface the engine has to an email
// provider's key management: SendGrid, Mailgun, SES (IAM) and Postmark, each
// in its own sub-package with a fake server that implements the provider's
// documented requests and answers for tests.
//
// A driver never logs, and its errors name the provider, the operation and
// the provider's status and error code, never a key or a response body that
// could echo one.
package provider

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Key is one provider credential as the engine stores it: what the provider
// knows it by (not secret), the secret itself, and what a successor must
// keep (its name, scopes, role, domain or IAM user).
type Key struct {
	// ID is the provider's id of the key: SendGrid api_key_id, Mailgun key
	// id, IAM access key id. Empty when the provider has none (Postmark).
	ID string `json:"id,omitempty"`
	// Secret is the key itself: an API key, an IAM secret access key, a
	// Postmark server token.
	Secret string `json:"secret,omitempty"`
	// Name is the key's name at the provider (SendGrid name, Mailgun
	// description).
	Name string `json:"name,omitempty"`
	// Scopes are SendGrid's permissions of the key.
	Scopes []string `json:"scopes,omitempty"`
	// Role and Domain are Mailgun's: the key's role (admin, developer,
	// sending, ...) and, for a domain sending key, its domain.
	Role   string `json:"role,omitempty"`
	Domain string `json:"domain,omitempty"`
	// User is the IAM user that owns an access key.
	User string `json:"user,omitempty"`
}

// Driver changes credentials at one provider. Create and Delete are
// authenticated with the Endpoint's Auth credential; Test with the key it
// tests.
type Driver interface {
	// Create mints a new key like the given one (same name, scopes, role,
	// domain or user). A provider that mints no keys returns ErrManual.
	Create(ctx context.Context, like Key) (Key, error)
	// Test makes one cheap authenticated call with k and fails unless the
	// provider accepts it.
	Test(ctx context.Context, k Key) error
	// Delete removes the key with k.ID at the provider. A key that is
	// already gone is success.
	Delete(ctx context.Context, k Key) error
}

// Endpoint is where and as whom a driver calls a provider.
type Endpoint struct {
	// BaseURL is the provider's API root, checked with CheckBaseURL.
	BaseURL string
	// Region is the provider's region (Mailgun us|eu, SendGrid global|eu,
	// an AWS region).
	Region string
	// Auth authenticates key management calls: the mount's provider
	// credential, or the secret's own current key.
	Auth Key
	// HTTP is the client; nil means a client with DefaultTimeout.
	HTTP *http.Client
}

// DefaultTimeout bounds one HTTP call when the Endpoint has no client.
const DefaultTimeout = 20 * time.Second

// Client returns the endpoint's HTTP client.
func (e Endpoint) Client() *http.Client {
	if e.HTTP != nil {
		return e.HTTP
	}
	return &http.Client{Timeout: DefaultTimeout}
}

// ErrManual is returned by Create of a provider whose keys are made by hand
// in its console (Postmark server tokens): the caller supplies the key.
var ErrManual = errors.New("this provider has no API that creates keys: supply the new key")

// ErrKeyLimit is wrapped by Create when the account or user already has as
// many keys as the provider allows (SendGrid 100 per account, IAM 2 per
// user). The driver never deletes a key to make room.
var ErrKeyLimit = errors.New("the provider's key limit is reached")

// Error is a provider's refusal or failure of one call.
type Error struct {
	Provider string
	Op       string
	// Status is the HTTP status; 0 when no answer came.
	Status int
	// Code is the provider's own error code or short message, when it gave
	// one that carries no secret.
	Code string
	// RetryAfter is the provider's Retry-After on 429 and 503, if any.
	RetryAfter time.Duration
	// Err is the underlying error (ErrKeyLimit, a transport error).
	Err error
}

func (e *Error) Error() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s %s", e.Provider, e.Op)
	if e.Status != 0 {
		fmt.Fprintf(&sb, ": HTTP %d", e.Status)
	}
	if e.Code != "" {
		fmt.Fprintf(&sb, ": %s", e.Code)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&sb, " (retry after %s)", e.RetryAfter)
	}
	if e.Err != nil {
		fmt.Fprintf(&sb, ": %v", e.Err)
	}
	return sb.String()
}

func (e *Error) Unwrap() error { return e.Err }

// RetryDelay is how long the server asked to wait before a retry (its
// Retry-After); zero when it did not say.
func (e *Error) RetryDelay() time.Duration { return e.RetryAfter }

// Temporary reports whether the call may succeed if retried: a rate limit,
// a request the server timed out (408), a server error or no answer at all.
func (e *Error) Temporary() bool {
	return e.Status == 0 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout || e.Status >= 500
}

// CheckBaseURL accepts an absolute https URL, or an http URL whose host is
// a loopback address (a local test server or a sidecar): credentials never
// travel in clear text off the machine.
func CheckBaseURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, fmt.Errorf("must be an absolute https URL")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("must not carry credentials, a query or a fragment")
	}
	if u.Scheme == "http" && !IsLoopback(u.Hostname()) {
		return nil, fmt.Errorf("http is accepted only for loopback addresses; use https")
	}
	return u, nil
}

// IsLoopback reports whether host names this machine: localhost, or an IP
// address in 127.0.0.0/8 or ::1.
func IsLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// RetryAfter parses a Retry-After header given in seconds; anything else
// is zero.
func RetryAfter(h http.Header) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	var secs int
	if _, err := fmt.Sscanf(v, "%d", &secs); err != nil || secs < 0 {
		return 0
	}
	return time.Duration(secs) * time.Second
}

// Join returns base with path appended, keeping any path base has (a
// provider behind a prefix).
func Join(base, path string) string {
	return strings.TrimRight(base, "/") + "/" + strings.TrimLeft(path, "/")
}

// MailServer sets a mailbox password on a mail server that the SMTP secrets
// log in to (Mailu's admin API). Other servers (Stalwart, Postal, ...) get
// drivers of their own behind the same interface.
type MailServer interface {
	// SetPassword makes password the mailbox's password, without the old
	// one.
	SetPassword(ctx context.Context, email, password string) error
}

// Finder is implemented by drivers whose provider lists keys. It finds a key
// that Create made but whose id the engine lost (the plugin stopped, or
// storage failed, between the provider's answer and the engine's write), so
// that the rollback can remove it instead of leaving it valid and unknown.
type Finder interface {
	// Find returns the id of the key like describes that is not one of
	// held (the ids the engine knows): for SendGrid and Mailgun the key
	// named like.Name (the engine names every new key uniquely); for IAM a
	// key of like.User created at or after since. ok is false when there
	// is none. More than one candidate is an error, never a guess.
	Find(ctx context.Context, like Key, since time.Time, held []string) (id string, ok bool, err error)
}

// Region is one of a provider's API regions and its public API root.
type Region struct{ Name, URL string }

// Regions are a provider's API regions, the first the default.
type Regions struct {
	Provider string
	List     []Region
}

// Names lists the regions' names.
func (r Regions) Names() []string {
	out := make([]string, len(r.List))
	for i, g := range r.List {
		out[i] = g.Name
	}
	return out
}

// BaseURL is the public API root of region ("" is the default region).
func (r Regions) BaseURL(region string) (string, error) {
	if region == "" {
		return r.List[0].URL, nil
	}
	for _, g := range r.List {
		if g.Name == region {
			return g.URL, nil
		}
	}
	return "", fmt.Errorf("region %q is not a %s region: use one of %s", region, r.Provider, strings.Join(r.Names(), ", "))
}

// Base is the API root an endpoint calls: its BaseURL, checked with
// CheckBaseURL, or else its region's public root.
func (r Regions) Base(ep Endpoint) (string, error) {
	def, err := r.BaseURL(ep.Region)
	if err != nil {
		return "", err
	}
	if ep.BaseURL == "" {
		return def, nil
	}
	if _, err := CheckBaseURL(ep.BaseURL); err != nil {
		return "", fmt.Errorf("base_url %w", err)
	}
	return ep.BaseURL, nil
}
