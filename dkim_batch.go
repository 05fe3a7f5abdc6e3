package penguinmails

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
)

// Bounds of one batch sign. 1,000 items keep one request's answer and
// work bounded (a few seconds of rsa-4096 signing at most); the decoded
// messages together may take dkimBatchBytesFactor times the single-message
// bound (16 MiB by default), which also keeps the base64 request under
// Vault's default max_request_size of 32 MiB.
const (
	dkimBatchMaxItems    = 1000
	dkimBatchBytesFactor = 4
)

// dkimBatchItem is one validated item of batch_input, or the refusal of it.
type dkimBatchItem struct {
	encoded   string
	opts      *dkim.SignOptions
	algorithm string
	err       error
}

// dkimBatchFields are the keys an item may have.
var dkimBatchFields = []string{"message", "headers", "canonicalization", "algorithm"}

// dkimSignBatchRequest answers a sign with batch_input: one result per item,
// in order. A refused item is an error in its result and does not stop the
// others, as Vault transit's batches do; the request itself is refused only
// for what concerns it whole (both message and batch_input, too many items
// or bytes, a key that cannot sign at all).
func (b *backend) dkimSignBatchRequest(ctx context.Context, req *logical.Request, d *framework.FieldData, k *secretKind, cfg *engineConfig) (*logical.Response, error) {
	if _, single := d.Raw["message"]; single {
		return nil, badInput("message and batch_input are mutually exclusive: give one message, or a list in batch_input")
	}
	items, err := dkimBatchInput(d, cfg.DKIMSignMaxMessageBytes)
	if err != nil {
		return nil, err
	}
	return b.onEntry(k, func(e *secretEntry, ref secretRef, _ *framework.FieldData) (*logical.Response, error) {
		v, m, err := dkimSigningVersion(e, ref)
		if err != nil {
			return nil, err
		}
		results := make([]interface{}, len(items))
		signed := 0
		for i, it := range items {
			var data map[string]interface{}
			err := it.err
			if err == nil {
				data, err = b.dkimSignWith(e, v, m, it.encoded, it.opts, it.algorithm)
			}
			if err != nil {
				results[i] = map[string]interface{}{"error": fmt.Sprintf("batch_input[%d]: %v", i, err)}
				continue
			}
			results[i] = data
			signed++
		}
		b.countUses(req.Storage, e, signed) // each signature is a use for max_uses
		return &logical.Response{Data: map[string]interface{}{"batch_results": results}}, nil
	})(ctx, req, d)
}

// dkimBatchInput validates batch_input. Each message's size is counted on
// its base64 before anything is decoded. Headers, canonicalization and
// algorithm an item leaves out are the request's.
func dkimBatchInput(d *framework.FieldData, limit int) ([]dkimBatchItem, error) {
	raw, _, err := d.GetOkErr("batch_input")
	if err != nil {
		return nil, badInput("batch_input must be a list of objects {message, headers, canonicalization, algorithm}")
	}
	list, _ := raw.([]interface{})
	if len(list) == 0 {
		return nil, badInput("batch_input is empty: give at least one object {message, ...}")
	}
	if len(list) > dkimBatchMaxItems {
		return nil, badInput("batch_input has %d items; at most %d per request", len(list), dkimBatchMaxItems)
	}
	defaults := dkimBatchDefaults(d)
	items := make([]dkimBatchItem, len(list))
	total := 0
	for i, raw := range list {
		size := 0
		items[i], size = dkimBatchItemOf(raw, defaults, limit)
		total += size
	}
	if bound := dkimBatchBytesFactor * limit; total > bound {
		return nil, logical.CodedError(413, fmt.Sprintf("batch_input messages take %d bytes once decoded; at most %d per request (%d times dkim_sign_max_message_bytes)",
			total, bound, dkimBatchBytesFactor))
	}
	return items, nil
}

// dkimBatchDefaults are the request's own headers, canonicalization and
// algorithm, which items inherit.
func dkimBatchDefaults(d *framework.FieldData) map[string]interface{} {
	out := map[string]interface{}{
		"canonicalization": d.Get("canonicalization").(string),
		"algorithm":        d.Get("algorithm").(string),
	}
	if v, ok := d.GetOk("headers"); ok {
		out["headers"] = v.([]string)
	}
	return out
}

// dkimBatchItemOf validates one item and returns it with its decoded size
// (0 when refused).
func dkimBatchItemOf(raw interface{}, defaults map[string]interface{}, limit int) (dkimBatchItem, int) {
	obj, ok := raw.(map[string]interface{})
	if !ok {
		return dkimBatchItem{err: badInput("must be an object {message, headers, canonicalization, algorithm}")}, 0
	}
	if unknown := unknownKeys(obj, dkimBatchFields); unknown != "" {
		return dkimBatchItem{err: badInput("unknown field %s: an item has %s", quoteShort(unknown), strings.Join(dkimBatchFields, ", "))}, 0
	}
	encoded, ok := obj["message"].(string)
	if !ok {
		return dkimBatchItem{err: badInput("message is required: the base64 of an RFC 5322 message, as a string")}, 0
	}
	size, err := dkimkey.MessageSize(encoded)
	if err != nil {
		return dkimBatchItem{err: err}, 0
	}
	if size > limit {
		return dkimBatchItem{err: logical.CodedError(413, fmt.Sprintf("message is %d bytes once decoded; dkim_sign_max_message_bytes (config) allows %d", size, limit))}, 0
	}
	it := dkimBatchItem{encoded: encoded}
	headers, err := batchHeaders(obj["headers"], defaults["headers"])
	if err != nil {
		return dkimBatchItem{err: err}, 0
	}
	canon, err := batchString(obj, defaults, "canonicalization")
	if err != nil {
		return dkimBatchItem{err: err}, 0
	}
	if it.algorithm, err = batchString(obj, defaults, "algorithm"); err != nil {
		return dkimBatchItem{err: err}, 0
	}
	it.algorithm = strings.TrimSpace(it.algorithm)
	if it.opts, err = dkimkey.SignOptions(headers, canon); err != nil {
		return dkimBatchItem{err: err}, 0
	}
	return it, size
}

// batchHeaders reads an item's headers: a comma-separated string or a list
// of strings; left out, the request's (nil: the default list).
func batchHeaders(v, fallback interface{}) ([]string, error) {
	switch h := v.(type) {
	case nil:
		out, _ := fallback.([]string)
		return out, nil
	case string:
		return strings.Split(h, ","), nil
	case []interface{}:
		out := make([]string, len(h))
		for i, name := range h {
			s, ok := name.(string)
			if !ok {
				return nil, badInput("headers must be a list of header field names (strings)")
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, badInput("headers must be a comma-separated string or a list of header field names")
}

// batchString reads a string field of an item, or the request's.
func batchString(obj, defaults map[string]interface{}, field string) (string, error) {
	v, set := obj[field]
	if !set || v == nil {
		return defaults[field].(string), nil
	}
	s, ok := v.(string)
	if !ok {
		return "", badInput("%s must be a string", field)
	}
	return s, nil
}

// unknownKeys returns the first key of obj (in order) not in known, or "".
func unknownKeys(obj map[string]interface{}, known []string) string {
	var unknown []string
	for k := range obj {
		if !slices.Contains(known, k) {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return ""
	}
	sort.Strings(unknown)
	return unknown[0]
}
