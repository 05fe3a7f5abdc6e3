package integration

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

// The platform's TypeScript stores credentials the KV v2 way; through the
// real Vault (the Go client here, the CLI below) the engine stores what it
// is sent, refuses what it cannot place, and lets PATCH change one field.
func TestWrites_KVv2ShapePatchAndListThroughVault(t *testing.T) {
	const path = mount + "/smtp/tenant-kv/mail-1"
	t.Cleanup(func() { _, _ = runVault("delete", path) })
	l := client.Logical()
	for _, pw := range []string{"Kv2-Integration-Pw-1", "Kv2-Integration-Pw-2", "Kv2-Patched-Pw-3"} {
		rememberSecret(pw)
	}

	if _, err := l.Write(path, map[string]interface{}{"data": map[string]interface{}{
		"username": "admin@example.com", "password": "Kv2-Integration-Pw-1", "host": "smtp.example.com", "port": "587"}}); err != nil {
		t.Fatalf("KV v2-shaped create: %v", err)
	}
	if _, err := l.Write(path, map[string]interface{}{"data": map[string]interface{}{"password": "Kv2-Integration-Pw-2"}}); err != nil {
		t.Fatalf("KV v2-shaped update: %v", err)
	}
	got := cliData(t, "read", path)
	if got["password"] != "Kv2-Integration-Pw-2" || num(got["version"]) != 2 || num(got["port"]) != 587 {
		t.Fatalf("after KV v2-shaped writes: version %v port %v, password changed: %v", got["version"], got["port"], got["password"] == "Kv2-Integration-Pw-2")
	}

	_, err := l.Write(path, map[string]interface{}{"host": "smtp.example.com", "data": map[string]interface{}{"password": "x"}})
	if statusCode(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "cannot be mixed") {
		t.Fatalf("data beside flat fields: %v", err)
	}
	msg := vaultCLIFails(t, "write", path, "passwd=typo")
	if !strings.Contains(msg, `"passwd"`) {
		t.Fatalf("unknown field: %s", msg)
	}

	// vault patch: settings in place, material as a new version.
	vaultCLI(t, "patch", path, "rotation_period=60d")
	vaultCLI(t, "patch", path, "password=Kv2-Patched-Pw-3")
	got = cliData(t, "read", path)
	if got["password"] != "Kv2-Patched-Pw-3" || num(got["version"]) != 3 || got["rotation_period"] != "1440h" || got["host"] != "smtp.example.com" {
		t.Fatalf("after vault patch: version %v period %v host %v", got["version"], got["rotation_period"], got["host"])
	}
	if _, err := l.JSONMergePatch(context.Background(), mount+"/smtp/tenant-kv/missing", map[string]interface{}{"max_versions": 3}); statusCode(err) != http.StatusNotFound {
		t.Fatalf("patch of a missing secret: %v, want 404", err)
	}

	// The mount lists its types, with one duration format in reads.
	types := vaultCLI(t, "list", mount+"/")
	for _, want := range []string{"api-keys/", "dkim/", "oauth/", "smtp/", "ssh/"} {
		if !strings.Contains(types, want) {
			t.Errorf("vault list %s/ lacks %s:\n%s", mount, want, types)
		}
	}
	cfg := cliData(t, "read", mount+"/config")
	for _, field := range []string{"smtp_rotation_period", "smtp_alert_threshold", "dkim_publish_lead", "ssh_grace_period"} {
		if text, ok := cfg[field].(string); !ok || !durationRe.MatchString(text) {
			t.Errorf("config %s = %#v, want duration text such as 720h", field, cfg[field])
		}
	}
}

// durationRe is the engine's one duration format: Go's, no zero units, and
// at least one unit (an empty field is no duration).
var durationRe = regexp.MustCompile(`^(0s|[1-9][0-9]*h([1-9][0-9]?m)?([1-9][0-9]?s)?|[1-9][0-9]?m([1-9][0-9]?s)?|[1-9][0-9]?s)$`)
