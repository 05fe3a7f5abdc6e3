package dkimmilter

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode"
)

// Key names one DKIM secret of the engine: dkim/{Tenant}/{Domain}.
type Key struct{ Tenant, Domain string }

// SignResult is the answer for one message of a batch: the whole
// DKIM-Signature header field as the engine returns it, or why not.
type SignResult struct {
	Signature string
	Err       error
}

// Signer signs messages of one domain in a single request, answering one
// result per message, in order. An error concerns the whole request.
type Signer interface {
	SignBatch(ctx context.Context, key Key, msgs [][]byte) ([]SignResult, error)
}

// VaultClient calls the engine over Vault's HTTP API with a token from a
// TokenFile. Its http.Client should keep connections alive (the default
// transport does), so consecutive batches reuse one TLS session.
type VaultClient struct {
	Addr             string // http(s)://host:port
	Mount            string // the engine's mount path, "penguinmails"
	Token            *TokenFile
	HTTP             *http.Client
	Headers          []string // header fields to sign; the engine's default when empty
	Canonicalization string   // the engine's default (relaxed/relaxed) when empty
}

// StatusError is a non-2xx answer from Vault. Msg is Vault's error text,
// which never contains the token or a message.
type StatusError struct {
	Status int
	Msg    string
}

func (e *StatusError) Error() string { return fmt.Sprintf("vault answered %d: %s", e.Status, e.Msg) }

// ItemError is the engine's refusal of one message of a batch. Its text
// may quote a malformed header line of the message, so only LogText, the
// item and the rule broken, goes to logs.
type ItemError struct{ Msg string }

func (e *ItemError) Error() string { return e.Msg }

// LogText is "batch_input[i]: invalid message" without what follows.
func (e *ItemError) LogText() string {
	parts := strings.SplitN(e.Msg, ": ", 3)
	return strings.Join(parts[:min(len(parts), 2)], ": ")
}

// SignBatch signs msgs through dkim/{tenant}/{domain}/sign with batch_input.
func (c *VaultClient) SignBatch(ctx context.Context, key Key, msgs [][]byte) ([]SignResult, error) {
	items := make([]map[string]string, len(msgs))
	for i, m := range msgs {
		items[i] = map[string]string{"message": base64.StdEncoding.EncodeToString(m)}
	}
	body := map[string]interface{}{"batch_input": items}
	if len(c.Headers) > 0 {
		body["headers"] = c.Headers
	}
	if c.Canonicalization != "" {
		body["canonicalization"] = c.Canonicalization
	}
	var out struct {
		Data struct {
			Results []struct {
				Signature string `json:"dkim_signature"`
				Error     string `json:"error"`
			} `json:"batch_results"`
		} `json:"data"`
	}
	path := "dkim/" + url.PathEscape(key.Tenant) + "/" + url.PathEscape(key.Domain) + "/sign"
	if err := c.call(ctx, http.MethodPost, path, body, &out); err != nil {
		return nil, err
	}
	if len(out.Data.Results) != len(msgs) {
		return nil, fmt.Errorf("vault answered %d batch results for %d messages", len(out.Data.Results), len(msgs))
	}
	res := make([]SignResult, len(msgs))
	for i, r := range out.Data.Results {
		switch {
		case r.Error != "":
			res[i].Err = &ItemError{Msg: r.Error}
		case r.Signature == "":
			res[i].Err = errors.New("vault answered no dkim_signature")
		default:
			res[i].Signature = r.Signature
		}
	}
	return res, nil
}

// Owner reads dkim-domains/{domain}: the owning tenant, "" when the domain
// has no owner (404) or is held by several tenants (a conflict, which only
// an operator resolves; signing for either could be wrong).
func (c *VaultClient) Owner(ctx context.Context, domain string) (string, error) {
	var out struct {
		Data struct {
			Owner string `json:"owner"`
		} `json:"data"`
	}
	err := c.call(ctx, http.MethodGet, "dkim-domains/"+url.PathEscape(domain), nil, &out)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusNotFound {
		return "", nil
	}
	return out.Data.Owner, err
}

// call sends one request; on a 403 it reads the token file again and tries
// once more, since Agent may have replaced an expired token.
func (c *VaultClient) call(ctx context.Context, method, path string, in, out interface{}) error {
	var payload []byte
	if in != nil {
		var err error
		if payload, err = json.Marshal(in); err != nil {
			return err
		}
	}
	tok, err := c.Token.Token()
	if err != nil {
		return err
	}
	err = c.once(ctx, method, path, tok, payload, out)
	var se *StatusError
	if errors.As(err, &se) && se.Status == http.StatusForbidden {
		if tok, err = c.Token.Reload(); err != nil {
			return err
		}
		err = c.once(ctx, method, path, tok, payload, out)
	}
	return err
}

func (c *VaultClient) once(ctx context.Context, method, path, tok string, payload []byte, out interface{}) error {
	u := provider.Join(c.Addr, "/v1/"+strings.Trim(c.Mount, "/")+"/"+path)
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(payload))
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", tok)
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		return &StatusError{Status: resp.StatusCode, Msg: vaultErrors(data)}
	}
	return json.Unmarshal(data, out)
}

// vaultErrors joins the "errors" of a Vault error answer, bounded in length.
func vaultErrors(data []byte) string {
	var e struct {
		Errors []string `json:"errors"`
	}
	_ = json.Unmarshal(data, &e) // a proxy's HTML answer has none
	msg := strings.Join(e.Errors, "; ")
	if msg == "" {
		msg = "(no error text)"
	}
	// Control characters out (the text reaches the milter's log lines),
	// and a cut on a character boundary.
	msg = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, msg)
	if r := []rune(msg); len(r) > 300 {
		msg = string(r[:300]) + "..."
	}
	return msg
}
