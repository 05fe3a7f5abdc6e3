package penguinmails

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// marker is a secret value no response, error or log line may ever carry.
const marker = "MARKER-3f9c1e-never-echo-me"

// wrongTypes are JSON values of the wrong type for a string field, each
// carrying the marker.
func wrongTypes() map[string]interface{} {
	return map[string]interface{}{
		"list":   []interface{}{marker, "x"},
		"object": map[string]interface{}{"k": marker},
		"nested": []interface{}{map[string]interface{}{marker: marker}},
	}
}

func TestRequest_WrongTypeOfSecretFieldNamesFieldNotValue(t *testing.T) {
	cases := []struct{ path, field string }{
		{"smtp/tenant-1/m1", "password"},
		{"ssh/tenant-1/admin", "private_key"},
		{"ssh/tenant-1/admin", "passphrase"},
	}
	for _, c := range cases {
		for kind, v := range wrongTypes() {
			env := newTestEnv(t)
			data := map[string]interface{}{c.field: v}
			msg := env.badRequest(logical.UpdateOperation, c.path, data)
			if strings.Contains(msg, marker) {
				t.Errorf("%s %s (%s): message quotes the value: %s", c.path, c.field, kind, msg)
			}
			if !strings.Contains(msg, c.field) || !strings.Contains(msg, "string") {
				t.Errorf("%s %s (%s): message must name the field and the expected type: %s", c.path, c.field, kind, msg)
			}
			if keys := env.storedKeys(); len(keys) != 0 {
				t.Errorf("%s %s (%s): stored %v", c.path, c.field, kind, keys)
			}
			if strings.Contains(env.logs.String(), marker) {
				t.Errorf("%s %s (%s): the log carries the value", c.path, c.field, kind)
			}
		}
	}
}

// The existence check runs before Vault's ACL check and before Vault has
// attached the caller's identity to what it audits. So malformed data does
// not fail it: it answers from the path alone (the sdk never sees the data,
// whose parse errors quote it), the policy decides next, and the handler
// refuses with a 400 that names the field and not the value.
func TestRequest_ExistenceCheckAnswersFromThePathAndTheHandlerRefuses(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/tenant-1/m1", smtpInput())
	for _, tc := range []struct {
		path   string
		exists bool
	}{{"smtp/tenant-1/m1", true}, {"smtp/tenant-1/m2", false}} {
		data := map[string]interface{}{"password": []interface{}{marker}}
		req := &logical.Request{Operation: logical.UpdateOperation, Path: tc.path, Storage: env.storage, Data: data}
		found, exists, err := env.b.HandleExistenceCheck(context.Background(), req)
		if err != nil || !found || exists != tc.exists {
			t.Fatalf("existence check of %s with malformed data = %v, %v, %v; want true, %v, nil", tc.path, found, exists, err, tc.exists)
		}
		if _, ok := req.Data["password"]; !ok {
			t.Fatalf("the existence check dropped the request's data")
		}
		msg := env.badRequest(logical.UpdateOperation, tc.path, data)
		if strings.Contains(msg, marker) || !strings.Contains(msg, "password") {
			t.Fatalf("%s: %q; want a message naming password, without the value", tc.path, msg)
		}
	}
	if strings.Contains(env.logs.String(), marker) {
		t.Errorf("the log carries the value")
	}
}

// The existence check leaves the request as sent, KV v2 shape included:
// in Vault the handler gets its own copy of the request, so whatever the
// check changed in it would hold in these in-process tests only.
func TestRequest_ExistenceCheckLeavesTheDataAsSent(t *testing.T) {
	env := newTestEnv(t)
	inner := smtpInput()
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "smtp/tenant-1/m1", Storage: env.storage,
		Data: map[string]interface{}{"data": inner}}
	found, exists, err := env.b.HandleExistenceCheck(context.Background(), req)
	if err != nil || !found || exists {
		t.Fatalf("existence check = %v, %v, %v; want true, false, nil", found, exists, err)
	}
	if !reflect.DeepEqual(req.Data, map[string]interface{}{"data": inner}) {
		t.Fatalf("the existence check changed the request's data to %v", req.Data)
	}
}

func TestRequest_UnknownFieldsAreNamedWithTheAcceptedOnes(t *testing.T) {
	env := newTestEnv(t)
	data := smtpInput()
	data["pasword"] = marker
	data["zzz"] = 1
	msg := env.badRequest(logical.UpdateOperation, "smtp/tenant-1/m1", data)
	for _, want := range []string{`"pasword"`, `"zzz"`, "password", "username"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %s", msg, want)
		}
	}
	if strings.Contains(msg, marker) {
		t.Errorf("message quotes a value: %s", msg)
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Errorf("stored %v", keys)
	}
	// Reads take query parameters as data too.
	env.ok(logical.UpdateOperation, "smtp/tenant-1/m1", smtpInput())
	msg = env.badRequest(logical.ReadOperation, "smtp/tenant-1/m1", map[string]interface{}{"verison": "1"})
	if !strings.Contains(msg, `"verison"`) {
		t.Errorf("read message %q does not name the unknown field", msg)
	}
}

// Vault removes "list" (when true) and "help" from the query; "list=false"
// stays in a read's data and must not be refused.
func TestRequest_KeysVaultAddsAreAccepted(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "smtp/tenant-1/m1", smtpInput())
	env.ok(logical.ReadOperation, "smtp/tenant-1/m1", map[string]interface{}{"list": "false"})
	env.ok(logical.ListOperation, "smtp/tenant-1/", nil)
	resp, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.HelpOperation, Path: "smtp/tenant-1/m1", Storage: env.storage,
		Data: map[string]interface{}{"anything": []interface{}{1}}})
	if err != nil || resp == nil || resp.Data["help"] == nil {
		t.Fatalf("help: %v %#v", err, resp)
	}
}

func TestRequest_WrongTypesOfOtherFieldsNameTheType(t *testing.T) {
	env := newTestEnv(t)
	cases := []struct {
		field string
		value interface{}
		want  string
	}{
		{"port", "not-a-port", "integer"},
		{"auto_rotate", []interface{}{true}, "boolean"},
		{"port", map[string]interface{}{}, "integer"},
	}
	for _, c := range cases {
		data := smtpInput()
		data[c.field] = c.value
		msg := env.badRequest(logical.UpdateOperation, "smtp/tenant-1/m1", data)
		if !strings.Contains(msg, c.field) || !strings.Contains(msg, c.want) {
			t.Errorf("%s=%v: message %q must name the field and %q", c.field, c.value, msg, c.want)
		}
	}
}

// A panic in an existence check is recovered like one in a handler, and the
// log carries neither the panic value nor the request data.
func TestRequest_PanicInExistenceCheckIsRecoveredWithoutData(t *testing.T) {
	env := newTestEnv(t)
	p := env.b.Backend.Route("smtp/tenant-1/m1")
	p.ExistenceCheck = func(context.Context, *logical.Request, *framework.FieldData) (bool, error) {
		panic(marker)
	}
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "smtp/tenant-1/m1",
		Storage: env.storage, Data: map[string]interface{}{"password": marker}}
	_, _, err := env.b.HandleExistenceCheck(context.Background(), req)
	if err == nil || strings.Contains(err.Error(), marker) {
		t.Fatalf("err = %v; want an internal error without the value", err)
	}
	if strings.Contains(env.logs.String(), marker) {
		t.Fatalf("log carries the panic value or data:\n%s", env.logs.String())
	}
}

// handle() recovers a panic in an operation the same way, with the same
// guarantee about the log.
func TestRequest_PanicInHandlerIsRecoveredWithoutData(t *testing.T) {
	env := newTestEnv(t)
	op := env.b.handle(func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
		panic(marker)
	})
	req := &logical.Request{Operation: logical.UpdateOperation, Path: "smtp/tenant-1/m1",
		Storage: env.storage, Data: map[string]interface{}{"password": marker}}
	resp, err := op(context.Background(), req, &framework.FieldData{})
	if resp != nil || err == nil || strings.Contains(err.Error(), marker) {
		t.Fatalf("got %v, %v; want an internal error without the value", resp, err)
	}
	if !strings.Contains(env.logs.String(), "internal error while handling request") || strings.Contains(env.logs.String(), marker) {
		t.Fatalf("log must report the panic without the value:\n%s", env.logs.String())
	}
}
