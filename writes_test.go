package penguinmails

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// The platform's code stores credentials the KV v2 way,
// write(path, {data: credential}), with every value a string. The engine
// stores what it sends, on create and on update.
func TestWrite_KVv2DataShapeStoresTheFields(t *testing.T) {
	env := newTestEnv(t)
	const path = "smtp/tenant-1/mail-1"
	credential := map[string]interface{}{"username": "admin@example.com", "password": "Kv2-Shaped-Password-1",
		"host": "smtp.example.com", "port": "587", "encryption": "starttls"}
	env.ok(logical.UpdateOperation, path, map[string]interface{}{"data": credential})
	got := env.ok(logical.ReadOperation, path, nil)
	if got["password"] != "Kv2-Shaped-Password-1" || got["port"] != 587 || got["version"] != 1 {
		t.Fatalf("after a KV v2-shaped create: password %v port %v version %v", got["password"], got["port"], got["version"])
	}

	env.ok(logical.UpdateOperation, path, map[string]interface{}{"data": map[string]interface{}{"password": "Kv2-Shaped-Password-2"}})
	got = env.ok(logical.ReadOperation, path, nil)
	if got["password"] != "Kv2-Shaped-Password-2" || got["version"] != 2 || got["host"] != "smtp.example.com" {
		t.Fatalf("after a KV v2-shaped update: password %v version %v host %v", got["password"], got["version"], got["host"])
	}
}

// A write that cannot be understood changes nothing and says why, naming
// the field: it never answers 200 having ignored what was sent.
func TestWrite_AmbiguousOrUnknownFieldsAreRefusedAndStoreNothing(t *testing.T) {
	env := newTestEnv(t)
	const path = "smtp/tenant-1/mail-1"
	cases := []struct {
		name string
		in   map[string]interface{}
		want []string
	}{
		{"data beside flat fields", map[string]interface{}{"host": "smtp.example.com", "username": "u", "data": map[string]interface{}{"password": "Mixed-Password-1"}},
			[]string{"data", `"host"`, `"username"`, "cannot be mixed"}},
		{"data not an object", map[string]interface{}{"data": "Scalar-Password-1"}, []string{"invalid data", "object"}},
		{"data inside data", map[string]interface{}{"data": map[string]interface{}{"data": map[string]interface{}{"password": "x"}}}, []string{"data.data"}},
		{"unknown flat field", map[string]interface{}{"host": "smtp.example.com", "username": "u", "passwd": "Typo-Password-1"}, []string{`"passwd"`, "unknown field"}},
		{"unknown field inside data", map[string]interface{}{"data": map[string]interface{}{"host": "smtp.example.com", "pass": "Typo-Password-2"}}, []string{`"pass"`, "unknown field"}},
	}
	for _, existing := range []bool{false, true} {
		if existing {
			env.ok(logical.UpdateOperation, path, smtpInput())
		}
		before := env.ok(logical.ReadOperation, path, nil)
		stored := env.storedKeys()
		for _, c := range cases {
			msg := env.badRequest(logical.UpdateOperation, path, c.in)
			for _, w := range c.want {
				if !strings.Contains(msg, w) {
					t.Errorf("existing=%v %s: message %q lacks %q", existing, c.name, msg, w)
				}
			}
			if strings.Contains(msg, "Password") {
				t.Errorf("existing=%v %s: message quotes a value: %q", existing, c.name, msg)
			}
		}
		if after := env.ok(logical.ReadOperation, path, nil); !reflect.DeepEqual(before, after) {
			t.Errorf("existing=%v: refused writes changed the secret:\nbefore %v\nafter  %v", existing, before, after)
		}
		if got := env.storedKeys(); !reflect.DeepEqual(got, stored) {
			t.Errorf("existing=%v: refused writes changed storage: %v -> %v", existing, stored, got)
		}
	}
}

// PATCH (vault patch, node-vault's update) changes what it is given and
// keeps the rest; material makes a new version as a write does; a secret
// that does not exist is a 404, never created from a partial body.
func TestPatch_ChangesGivenSettingsAndVersionsMaterial(t *testing.T) {
	env := newTestEnv(t)
	const path = "smtp/tenant-1/mail-1"
	if code, msg := env.code(logical.PatchOperation, path, map[string]interface{}{"max_versions": 3}); code != 404 || !strings.Contains(msg, path) {
		t.Fatalf("patch of a missing secret: %d %q, want 404 naming the path", code, msg)
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Fatalf("a refused patch stored %v", keys)
	}

	env.ok(logical.UpdateOperation, path, smtpInput())
	env.clock.Advance(time.Hour)
	env.ok(logical.PatchOperation, path, map[string]interface{}{"rotation_period": "60d", "max_versions": 3})
	got := env.ok(logical.ReadOperation, path, nil)
	if got["version"] != 1 || got["password"] != "s3cret-Password-1" || got["rotation_period"] != "1440h" || got["host"] != "smtp.example.com" {
		t.Fatalf("after a settings patch: version %v password %v period %v host %v", got["version"], got["password"], got["rotation_period"], got["host"])
	}

	env.ok(logical.PatchOperation, path, map[string]interface{}{"data": map[string]interface{}{"password": "Patched-Password-2"}})
	got = env.ok(logical.ReadOperation, path, nil)
	if got["version"] != 2 || got["password"] != "Patched-Password-2" || got["rotation_period"] != "1440h" {
		t.Fatalf("after a material patch: version %v password %v period %v", got["version"], got["password"], got["rotation_period"])
	}
	old := env.ok(logical.ReadOperation, path, map[string]interface{}{"version": 1})
	if old["password"] != "s3cret-Password-1" {
		t.Fatalf("version 1 after the patch: %v", old["password"])
	}
	env.badRequest(logical.PatchOperation, path, map[string]interface{}{"port": "not-a-port"})
}

// `vault list penguinmails/` lists the types, from the kinds the backend
// serves (not a list kept by hand), each a folder to list further.
func TestRoot_ListsSecretTypes(t *testing.T) {
	env := newTestEnv(t)
	got := env.ok(logical.ListOperation, "", nil)
	var want []string
	for _, k := range env.b.sortedKinds() {
		want = append(want, k.Name+"/")
	}
	if len(want) < 5 || !reflect.DeepEqual(got["keys"], want) {
		t.Fatalf("list of the mount: %v, want %v", got["keys"], want)
	}
	info := got["key_info"].(map[string]interface{})["smtp/"].(map[string]interface{})
	if info["title"] != env.b.kinds["smtp"].Title {
		t.Fatalf("key_info of smtp/: %v", info)
	}
	env.ok(logical.UpdateOperation, "smtp/tenant-1/mail-1", smtpInput())
	if tenants := env.ok(logical.ListOperation, "smtp/", nil)["keys"]; !reflect.DeepEqual(tenants, []string{"tenant-1"}) {
		t.Fatalf("list smtp/: %v", tenants)
	}
}

func TestDurationText_OneFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 90 * time.Second: "1m30s", time.Hour: "1h", 90 * time.Minute: "1h30m", 720 * time.Hour: "720h",
		10 * time.Minute: "10m", time.Hour + 30*time.Second: "1h0m30s", 1500 * time.Millisecond: "2s",
	} {
		if got := durationText(d); got != want {
			t.Errorf("durationText(%v) = %q, want %q", d, got, want)
		}
		if back, err := time.ParseDuration(durationText(d)); err != nil || back != d.Round(time.Second) {
			t.Errorf("durationText(%v) does not parse back: %v %v", d, back, err)
		}
	}
}

// config takes PATCH too: the given fields change, the rest stay.
func TestPatch_Config(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"max_versions": 7})
	env.ok(logical.PatchOperation, "config", map[string]interface{}{"smtp_rotation_period": "60d"})
	got := env.ok(logical.ReadOperation, "config", nil)
	if got["max_versions"] != 7 || got["smtp_rotation_period"] != "1440h" {
		t.Fatalf("config after patch: max_versions %v smtp_rotation_period %v", got["max_versions"], got["smtp_rotation_period"])
	}
	env.badRequest(logical.PatchOperation, "config", map[string]interface{}{"smtp_rotation_period": "-1h"})
}
