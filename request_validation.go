package penguinmails

import (
	"context"
	"fmt"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// The sdk validates request fields itself, but its errors quote the value
// ("... unconvertible type '[]interface {}', value: '[s3cret]'"), and Vault
// logs a failed existence check and copies the error unhashed into the audit
// entry. So the engine checks every request against the matched path's
// schema first, once for every path, and refuses with messages that name the
// field and the expected type, never the value.

// HandleExistenceCheck runs the sdk's existence check without the request
// data, and recovers a panic in it like handle() does.
//
// Every existence check of the engine reads path segments only, so the data
// is not needed: it is checked (and a KV v2 shape unwrapped) once, by
// HandleRequest, on the request as sent. Malformed data must not fail the
// existence check anyway: the sdk's parse errors quote it, Vault audits a
// failed existence check before it has attached the caller's identity (no
// display_name or entity_id), and answers it before the ACL check (a caller
// without access would get a 400, not a 403).
func (b *backend) HandleExistenceCheck(ctx context.Context, req *logical.Request) (checkFound, exists bool, err error) {
	defer b.recoverRequest(req, &err)
	data := req.Data
	req.Data = nil
	defer func() { req.Data = data }()
	return b.Backend.HandleExistenceCheck(ctx, req)
}

// HandleRequest refuses malformed request data with a 400 before the sdk
// parses it, and recovers a panic anywhere in the request.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (resp *logical.Response, err error) {
	defer b.recoverRequest(req, &err)
	if err := b.checkRequest(req); err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}
	return b.Backend.HandleRequest(ctx, req)
}

// recoverRequest turns a panic into an internal error. Neither the panic value
// nor the request data is logged: either could hold a secret.
func (b *backend) recoverRequest(req *logical.Request, err *error) {
	if r := recover(); r != nil {
		b.Logger().Error("internal error while handling request", "path", req.Path, "operation", req.Operation, "stack", string(debug.Stack()))
		*err = fmt.Errorf("internal error handling %s %q", req.Operation, req.Path)
	}
}

// checkRequest checks req.Data against the schema of the path it is routed
// to. Help needs no valid data (the sdk skips validation for it too), and a
// path that takes arbitrary input checks its own.
func (b *backend) checkRequest(req *logical.Request) error {
	switch req.Operation {
	case logical.RenewOperation, logical.RevokeOperation, logical.RollbackOperation, logical.RotationOperation:
		return nil // not routed to a path
	}
	return checkRequestOn(b.Backend.Route(req.Path), req)
}

// checkRequestOn is checkRequest on the path already routed to (nil: none).
// A KV v2-shaped write ({"data": {...}}) is unwrapped in req.Data first.
func checkRequestOn(p *framework.Path, req *logical.Request) error {
	if req.Operation == logical.HelpOperation || len(req.Data) == 0 {
		return nil
	}
	if p == nil || p.TakesArbitraryInput {
		return nil
	}
	data, err := unwrapKVData(p.Fields, req.Operation, req.Data)
	if err != nil {
		return err
	}
	req.Data = data
	return checkRequestData(p.Fields, req.Operation, req.Data)
}

// kvDataField is where KV v2 clients put a secret's fields:
// write(path, {data: {...}}).
const kvDataField = "data"

// unwrapKVData accepts the KV v2 shape of a write, {"data": {fields}}, as the
// fields themselves, so that code written for KV v2 (node-vault's
// write(path, {data: credential})) stores what it sends instead of having
// "data" ignored with a warning that most clients never show. Mixing the
// wrapper with flat fields is refused: which of two passwords was meant
// cannot be guessed. A path with a field of its own named "data" keeps it.
func unwrapKVData(fields map[string]*framework.FieldSchema, op logical.Operation, data map[string]interface{}) (map[string]interface{}, error) {
	inner, wrapped := data[kvDataField]
	if !wrapped || fields[kvDataField] != nil {
		return data, nil
	}
	switch op {
	case logical.CreateOperation, logical.UpdateOperation, logical.PatchOperation:
	default:
		return data, nil
	}
	if len(data) > 1 {
		var flat []string
		for k := range data {
			if k != kvDataField {
				flat = append(flat, k)
			}
		}
		return nil, badInput("data: the KV v2 shape {\"data\": {...}} cannot be mixed with flat fields (got %s beside it); send the fields either flat or all inside data", quoteNames(flat))
	}
	m, ok := inner.(map[string]interface{})
	if !ok {
		return nil, badInput("invalid data: expected an object holding the secret's fields (the KV v2 shape), for example {\"data\": {\"password\": \"...\"}}")
	}
	if _, nested := m[kvDataField]; nested {
		return nil, badInput("invalid data: the KV v2 wrapper may be used once; data.data is not a field of this path")
	}
	return m, nil
}

// checkRequestData refuses unknown fields (naming them and the accepted ones)
// and values of the wrong JSON type (naming the field and the type).
//
// Vault itself removes "help" and "list=true" from a GET's query, but leaves
// "list" in a read's data when it is false, so a read may carry it.
func checkRequestData(fields map[string]*framework.FieldSchema, op logical.Operation, data map[string]interface{}) error {
	var unknown []string
	for k := range data {
		if fields[k] == nil && !(op == logical.ReadOperation && k == "list") {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		return badInput("unknown field(s) %s: this path accepts %s", quoteNames(unknown), acceptedNames(fields))
	}
	for _, k := range sortedKeys(data) {
		if s := fields[k]; s != nil && !fitsType(s, k, data[k]) {
			return badInput("invalid %s: expected %s", k, typeName(fields[k].Type))
		}
	}
	return nil
}

// fitsType reports whether the sdk can convert v for the field, using the
// sdk's own conversion so that the rule cannot drift from it; its error,
// which quotes the value, is dropped.
func fitsType(s *framework.FieldSchema, k string, v interface{}) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	d := framework.FieldData{Raw: map[string]interface{}{k: v}, Schema: map[string]*framework.FieldSchema{k: s}}
	return d.Validate() == nil
}

// typeName says in words what a field of type t takes.
func typeName(t framework.FieldType) string {
	switch t {
	case framework.TypeString, framework.TypeLowerCaseString, framework.TypeNameString:
		return "a string"
	case framework.TypeInt, framework.TypeInt64:
		return "an integer"
	case framework.TypeBool:
		return "a boolean"
	case framework.TypeDurationSecond:
		return "a duration that is not negative (seconds as an integer, or a string such as \"24h\")"
	case framework.TypeSignedDurationSecond:
		return "a duration (seconds as an integer, or a string such as \"24h\")"
	case framework.TypeCommaStringSlice, framework.TypeStringSlice, framework.TypeSlice:
		return "a list of strings or a comma-separated string"
	case framework.TypeMap, framework.TypeKVPairs:
		return "an object"
	default:
		return "a value of type " + t.String()
	}
}

// quoteNames quotes field names, sorted, each cut short: a name is not a
// secret, but it is user input and may be huge.
func quoteNames(names []string) string {
	sort.Strings(names)
	const max = 10
	quoted := make([]string, 0, max+1)
	for i, n := range names {
		if i == max {
			quoted = append(quoted, fmt.Sprintf("and %d more", len(names)-max))
			break
		}
		quoted = append(quoted, quoteShort(n))
	}
	return strings.Join(quoted, ", ")
}

func acceptedNames(fields map[string]*framework.FieldSchema) string {
	if len(fields) == 0 {
		return "no fields"
	}
	return strings.Join(sortedKeys(fields), ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
