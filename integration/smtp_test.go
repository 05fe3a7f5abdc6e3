package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
)

// cliData runs a CLI command with -format=json and returns the response data.
func cliData(t *testing.T, args ...string) map[string]interface{} {
	t.Helper()
	out, err := runVaultFormat("json", args...)
	if err != nil {
		t.Fatalf("vault %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	var resp struct {
		Data map[string]interface{} `json:"data"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("vault %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	return resp.Data
}

// num reads a JSON number from CLI output as an int.
func num(v interface{}) int {
	f, _ := v.(float64)
	return int(f)
}

func TestPluginIsRegisteredBySHA256WithVersion(t *testing.T) {
	mounts, err := client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	m := mounts[mount+"/"]
	if m == nil {
		t.Fatalf("no %s/ mount", mount)
	}
	if m.Type != pluginName || m.RunningVersion != pluginVersion {
		t.Fatalf("mount type %q running version %q, want %q %q", m.Type, m.RunningVersion, pluginName, pluginVersion)
	}
	info, err := client.Sys().GetPlugin(&api.GetPluginInput{Name: pluginName, Type: api.PluginTypeSecrets, Version: pluginVersion})
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 != pluginSHA256 || info.Version != pluginVersion {
		t.Fatalf("catalog has sha256 %q version %q, want %q %q", info.SHA256, info.Version, pluginSHA256, pluginVersion)
	}
}

// TestSMTP_UserFlowThroughCLI runs the commands of the foundation issue as a
// user types them.
func TestSMTP_UserFlowThroughCLI(t *testing.T) {
	const path = mount + "/smtp/tenant-1/mail-1"
	rememberSecret("s3cret-Integration-Pw")
	vaultCLI(t, "write", path, "username=admin@example.com", "password=s3cret-Integration-Pw",
		"host=smtp.example.com", "port=587", "encryption=starttls")
	t.Cleanup(func() { _, _ = runVault("delete", path) })

	table := vaultCLI(t, "read", path)
	for _, field := range []string{"username", "password", "host", "port", "encryption", "version", "created_time",
		"updated_time", "last_rotated", "next_rotation", "rotation_period", "rotation_status"} {
		if !strings.Contains(table, "\n"+field+" ") {
			t.Errorf("vault read output lacks %q:\n%s", field, table)
		}
	}

	v1 := cliData(t, "read", path)
	if v1["password"] != "s3cret-Integration-Pw" || num(v1["version"]) != 1 || v1["rotation_status"] != "healthy" {
		t.Fatalf("first read: %v", v1)
	}

	rot := cliData(t, "write", "-f", path+"/rotate", `reason=quarterly review`)
	if num(rot["version"]) != 2 {
		t.Fatalf("rotate answered %v", rot)
	}
	cur := cliData(t, "read", path)
	old := cliData(t, "read", path, "version=1")
	newPW, _ := cur["password"].(string)
	rememberSecret(newPW)
	if num(cur["version"]) != 2 || len(newPW) < 32 || newPW == "s3cret-Integration-Pw" {
		t.Fatalf("after rotate: version %v, password length %d", cur["version"], len(newPW))
	}
	if num(old["version"]) != 1 || old["password"] != "s3cret-Integration-Pw" {
		t.Fatalf("version=1 read: %v", old["version"])
	}

	hist := cliData(t, "read", path+"/history")["history"].([]interface{})
	first := hist[0].(map[string]interface{})
	if first["reason"] != "quarterly review" || first["trigger"] != "manual" || first["actor"].(map[string]interface{})["display_name"] != "token" {
		t.Fatalf("history entry %v", first)
	}

	if keys := vaultCLI(t, "list", mount+"/smtp/tenant-1"); !strings.Contains(keys, "mail-1") {
		t.Fatalf("list tenant-1:\n%s", keys)
	}
	if keys := vaultCLI(t, "list", mount+"/smtp"); !strings.Contains(keys, "tenant-1") {
		t.Fatalf("list smtp:\n%s", keys)
	}

	help := vaultCLI(t, "path-help", path)
	for _, field := range []string{"username", "password", "host", "port", "encryption", "webmail_url", "rotation_period", "version"} {
		if !strings.Contains(help, field) {
			t.Errorf("path-help lacks %q", field)
		}
	}

	vaultCLI(t, "delete", path)
	vaultCLIFails(t, "read", path)
}

// TestSMTP_GoClient uses the Go vault/api client as an application would.
func TestSMTP_GoClient(t *testing.T) {
	const path = mount + "/smtp/tenant-go/relay"
	l := client.Logical()
	_, err := l.Write(path, map[string]interface{}{
		"username": "relay@example.org", "host": "10.0.0.25", "port": 465, "encryption": "tls",
		"webmail_url": "https://mail.example.org",
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })

	s, err := l.Read(path)
	if err != nil || s == nil {
		t.Fatalf("read: %v %v", s, err)
	}
	pw, _ := s.Data["password"].(string)
	rememberSecret(pw)
	if len(pw) < 32 || s.Data["password_generated"] != true {
		t.Fatalf("generated password length %d", len(pw))
	}
	if fmt.Sprint(s.Data["port"]) != "465" || s.Data["webmail_url"] != "https://mail.example.org" {
		t.Fatalf("read data %v", s.Data["port"])
	}

	if _, err := l.Write(path+"/rotate", map[string]interface{}{"reason": "leak", "incident_id": "INC-2026-042"}); err != nil {
		t.Fatal(err)
	}
	v1, err := l.ReadWithData(path, map[string][]string{"version": {"1"}})
	if err != nil {
		t.Fatal(err)
	}
	if v1.Data["password"] != pw || v1.Data["status"] != "expired" {
		t.Fatalf("version 1 after rotation: status %v", v1.Data["status"])
	}
	v2, _ := l.Read(path)
	rememberSecret(v2.Data["password"].(string))

	// The Go client reports a read's 404 as no secret; the CLI shows the message.
	if s, err := l.ReadWithData(path, map[string][]string{"version": {"9"}}); s != nil || err != nil {
		t.Fatalf("missing version: %v %v, want no secret", s, err)
	}
	_, err = readRaw(l, path, map[string][]string{"version": {"9"}})
	if statusCode(err) != 404 {
		t.Fatalf("raw read of a missing version: %v, want 404", err)
	}
	if !strings.Contains(err.Error(), "version 9") || !strings.Contains(err.Error(), "1 to 2") {
		t.Fatalf("404 does not say which versions are kept: %v", err)
	}
	if _, err := l.Write(mount+"/smtp/tenant-go/absent/rotate", nil); statusCode(err) != 404 {
		t.Fatalf("rotate of a missing secret: %v, want 404", err)
	}
}

// TestSMTP_BadInputIs400AndStoresNothing checks the foundation issue's list of
// refusals through the real server, with both clients.
func TestSMTP_BadInputIs400AndStoresNothing(t *testing.T) {
	good := map[string]interface{}{"username": "a@example.com", "password": "pw-0123456789", "host": "smtp.example.com", "port": 587, "encryption": "starttls"}
	cases := []struct {
		name, path string
		change     map[string]interface{}
		drop       string
		mention    string
	}{
		{"port 70000", "smtp/t-bad/m1", map[string]interface{}{"port": 70000}, "", "port"},
		{"encryption ssl3", "smtp/t-bad/m1", map[string]interface{}{"encryption": "ssl3"}, "", "encryption"},
		{"no host", "smtp/t-bad/m1", nil, "host", "host"},
		{"tenant ..", "smtp/%2E%2E/m1", nil, "", "tenant"},
		{"tenant with ..", "smtp/x..y/m1", nil, "", "tenant"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := map[string]interface{}{}
			for k, v := range good {
				in[k] = v
			}
			for k, v := range tc.change {
				in[k] = v
			}
			delete(in, tc.drop)
			_, err := client.Logical().Write(mount+"/"+tc.path, in)
			if statusCode(err) != 400 || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("got %v, want a 400 naming %q", err, tc.mention)
			}
		})
	}

	// The same refusals through the CLI.
	out := vaultCLIFails(t, "write", mount+"/smtp/t-bad/m1", "username=a@example.com", "host=smtp.example.com", "port=70000")
	if !strings.Contains(out, "Code: 400") || !strings.Contains(out, "port") {
		t.Fatalf("CLI port=70000:\n%s", out)
	}
	out = vaultCLIFails(t, "write", mount+"/smtp/t-bad/m1", "username=a@example.com", "host=smtp.example.com", "encryption=ssl3")
	if !strings.Contains(out, "Code: 400") || !strings.Contains(out, "encryption") {
		t.Fatalf("CLI encryption=ssl3:\n%s", out)
	}
	out = vaultCLIFails(t, "write", mount+"/smtp/t-bad/m1", "username=a@example.com")
	if !strings.Contains(out, "Code: 400") || !strings.Contains(out, "host is required") {
		t.Fatalf("CLI without host:\n%s", out)
	}

	// Vault resolves ".." before the engine sees the path; the engine still
	// answers 400 and says why.
	out = vaultCLIFails(t, "write", mount+"/smtp/../x/m1", "username=a@example.com", "host=smtp.example.com")
	if !strings.Contains(out, "Code: 400") || !strings.Contains(out, `".."`) {
		t.Fatalf("CLI tenant ..:\n%s", out)
	}

	if s, err := client.Logical().List(mount + "/smtp/t-bad"); err != nil || s != nil {
		t.Fatalf("refused writes stored something: %v %v", s, err)
	}
}

func TestConfig_RoundTripAndRefusals(t *testing.T) {
	l := client.Logical()
	t.Cleanup(func() {
		_, _ = l.Write(mount+"/config", map[string]interface{}{"smtp_rotation_period": "30d", "max_versions": 5})
	})
	if _, err := l.Write(mount+"/config", map[string]interface{}{"smtp_rotation_period": "45d", "max_versions": 7}); err != nil {
		t.Fatal(err)
	}
	cfg, err := l.Read(mount + "/config")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(cfg.Data["smtp_rotation_period"]) != "1080h" || fmt.Sprint(cfg.Data["max_versions"]) != "7" || fmt.Sprint(cfg.Data["dkim_grace_period"]) != "48h" {
		t.Fatalf("config read %v", cfg.Data)
	}
	for field, value := range map[string]interface{}{"ssh_rotation_period": -1, "smtp_alert_threshold": "60d", "max_versions": 0} {
		_, err := l.Write(mount+"/config", map[string]interface{}{field: value})
		if statusCode(err) != 400 || !strings.Contains(err.Error(), field) {
			t.Errorf("%s=%v: %v, want a 400 naming the field", field, value, err)
		}
	}
}

// TestOpenAPI_DescribesEveryPath reads the OpenAPI document Vault builds from
// the plugin's path help: the engine's paths are there, each operation with a
// unique id, and the help never failed to generate.
func TestOpenAPI_DescribesEveryPath(t *testing.T) {
	resp, err := client.Logical().ReadRaw("sys/internal/specs/openapi")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		Paths map[string]map[string]interface{} `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	found := 0
	for path, item := range doc.Paths {
		if !strings.HasPrefix(path, "/"+mount+"/") {
			continue
		}
		found++
		for method, op := range item {
			opMap, ok := op.(map[string]interface{})
			if !ok {
				continue // "parameters", "description", ...
			}
			id, _ := opMap["operationId"].(string)
			if id == "" {
				t.Errorf("%s %s has no operationId", method, path)
			} else if prev, dup := ids[id]; dup {
				t.Errorf("operationId %q used by %s and %s %s", id, prev, method, path)
			}
			ids[id] = method + " " + path
		}
	}
	for _, want := range []string{"/config", "/smtp/{tenant}/{name}", "/smtp/{tenant}/{name}/rotate", "/rotation/status", "/rotate/bulk", "/rotate-tenant/{tenant}", "/rotate/jobs/{job_id}"} {
		if doc.Paths["/"+mount+want] == nil {
			t.Errorf("OpenAPI lacks %s", want)
		}
	}
	if found < 10 {
		t.Fatalf("OpenAPI has %d penguinmails paths", found)
	}
}

// TestSMTP_IncidentRotationAndLoweredMaxVersions: an incident rotation
// destroys the password it replaces; after config max_versions=1 the older
// versions answer 404 at once.
func TestSMTP_IncidentRotationAndLoweredMaxVersions(t *testing.T) {
	l := client.Logical()
	const path = mount + "/smtp/tenant-maxv/mail-1"
	t.Cleanup(func() {
		_, _ = l.Delete(path)
		_, _ = l.Write(mount+"/config", map[string]interface{}{"max_versions": 5})
	})
	rememberSecret("first-Password-1")
	rememberSecret("second-Password-2")
	if _, err := l.Write(path, map[string]interface{}{"username": "a@example.com", "host": "smtp.example.com", "password": "first-Password-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Write(path, map[string]interface{}{"password": "second-Password-2"}); err != nil {
		t.Fatal(err)
	}
	rot, err := l.Write(path+"/rotate", map[string]interface{}{"revoke_previous": true, "incident_id": "INC-2026-078"})
	if err != nil || fmt.Sprint(rot.Data["revoked_versions"]) != "[2]" {
		t.Fatalf("incident rotation: %v %v", rot, err)
	}
	v2, err := readRaw(l, path, map[string][]string{"version": {"2"}})
	if err != nil || v2.Data["status"] != "revoked" || v2.Data["password"] != nil {
		t.Fatalf("version 2 after the incident rotation: %v, status %v, has password %v", err, v2.Data["status"], v2.Data["password"] != nil)
	}
	if s, err := readRaw(l, path, map[string][]string{"version": {"1"}}); err != nil || s.Data["password"] != "first-Password-1" {
		t.Fatalf("version 1 before lowering max_versions: %v", err)
	}
	if _, err := l.Write(mount+"/config", map[string]interface{}{"max_versions": 1}); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"1", "2"} {
		if _, err := readRaw(l, path, map[string][]string{"version": {v}}); statusCode(err) != 404 {
			t.Fatalf("version %s after max_versions=1: %v, want 404", v, err)
		}
	}
}
