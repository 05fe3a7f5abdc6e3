package integration

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// The malformed-request table of issue #7: every path of the engine gets
// wrong JSON types, huge values, bad base64 and PEM, traversal, unknown
// fields, wrong methods and non-canonical names. Every answer must be the
// row's 4xx with a message naming the field, nothing may be stored, and no
// submitted secret may reach the audit file or the server log.

// Fixtures the table's sub-path rows act on; the table must leave them as
// they are.
const (
	fixSMTP = "smtp/sec-fix/m1"
	fixSSH  = "ssh/sec-fix/admin"
	fixDKIM = "dkim/sec-fix/example.com"
)

// malformedRow is one request of the table. Body is sent as it is (raw JSON);
// marker, when set, is the secret the body carries.
type malformedRow struct {
	name   string
	method string
	path   string // under the mount, sent without further escaping
	body   string
	status int
	want   string // a substring of Vault's error text, naming the field
	marker string
}

// js encodes a value as JSON for a row's body.
func js(v interface{}) string {
	out, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(out)
}

// sendRaw sends one request to the mount over plain HTTP, so that the path
// reaches Vault exactly as written (percent-encoding included), and returns
// the status and Vault's error text.
func sendRaw(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, vaultAddr+"/v1/"+mount+"/"+path, rd)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	req.Header.Set("X-Vault-Token", rootToken)
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var parsed struct {
		Errors []string `json:"errors"`
	}
	_ = json.Unmarshal(raw, &parsed)
	return resp.StatusCode, strings.Join(parsed.Errors, "; ")
}

func malformedRows(t *testing.T) []malformedRow {
	m := func() string { return randomSecret(t, "PMSEC-") }
	smtpOK := func(extra map[string]interface{}) string {
		d := map[string]interface{}{"username": "u@example.com", "host": "smtp.example.com", "port": 587, "encryption": "starttls"}
		for k, v := range extra {
			d[k] = v
		}
		return js(d)
	}
	msg := base64.StdEncoding.EncodeToString([]byte("From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"))
	// Vault itself answers 500 to a JSON string of 1 MiB or more and to a
	// list of more than 10,000 items, before any engine sees the request
	// (http/handler.go CustomMaxJSON*); these are the largest that reach it.
	huge := func(prefix string) string { return prefix + strings.Repeat("A", 1<<20-1024) }
	var rows []malformedRow
	add := func(name, method, path, body string, status int, want, marker string) {
		rows = append(rows, malformedRow{name, method, path, body, status, want, marker})
	}

	// Wrong JSON types: the secret fields (finding 3) and the others.
	for _, c := range []struct{ path, field string }{
		{"smtp/sec-t/m1", "password"}, {fixSMTP, "password"},
		{"ssh/sec-t/k1", "private_key"}, {"ssh/sec-t/k1", "passphrase"},
		{fixSSH + "/private", "passphrase"}, {fixDKIM + "/sign", "message"},
	} {
		for _, shape := range []string{"list", "object", "nested"} {
			mk := m()
			v := map[string]interface{}{"list": []interface{}{mk, "x"}, "object": map[string]interface{}{"k": mk},
				"nested": []interface{}{map[string]interface{}{"k": []interface{}{mk}}}}[shape]
			add(c.field+" as "+shape+" at "+c.path, "POST", c.path, js(map[string]interface{}{c.field: v}), 400, c.field, mk)
		}
	}
	mk := m()
	add("password as a number", "POST", "smtp/sec-t/m1", `{"password": 98765432123456789, "username": ["`+mk+`"]}`, 400, "username", mk)
	add("port as a string", "POST", "smtp/sec-t/m1", smtpOK(map[string]interface{}{"password": m(), "port": "five"}), 400, "port", "")
	add("auto_rotate as a list", "POST", "smtp/sec-t/m1", smtpOK(map[string]interface{}{"auto_rotate": []bool{true}}), 400, "auto_rotate", "")
	add("max_versions as a string", "POST", "config", `{"max_versions": "many"}`, 400, "max_versions", "")
	add("duration as a list", "POST", "config", `{"smtp_rotation_period": ["1h"]}`, 400, "smtp_rotation_period", "")
	add("password_policy as an object", "POST", "config", `{"password_policy": {"a": 1}}`, 400, "password_policy", "")
	add("exportable as a string", "POST", "dkim/sec-t/example.org", `{"exportable": "perhaps"}`, 400, "exportable", "")
	add("one_time_download as a list", "POST", "ssh/sec-t/k1", `{"one_time_download": [1]}`, 400, "one_time_download", "")
	add("reason as a list on rotate", "POST", fixSMTP+"/rotate", `{"reason": ["a"]}`, 400, "reason", "")
	add("reason as an object on revoke", "POST", fixSSH+"/revoke", `{"reason": {"a": 1}}`, 400, "reason", "")
	add("incident_id as a list on rotate-tenant", "POST", "rotate-tenant/sec-fix", `{"incident_id": ["INC-1"]}`, 400, "incident_id", "")
	add("version as a word", "GET", fixSMTP+"?version=latest", "", 400, "version", "")
	add("version as a word on dkim private", "POST", fixDKIM+"/private", `{"version": "latest"}`, 400, "version", "")
	add("headers as an object on sign", "POST", fixDKIM+"/sign", js(map[string]interface{}{"message": msg, "headers": map[string]int{"a": 1}}), 400, "headers", "")
	add("tenant given twice on rotation/status", "GET", "rotation/status?tenant=a&tenant=b", "", 400, "tenant", "")

	// Unknown fields: named, with the accepted ones listed.
	add("unknown field on smtp", "POST", "smtp/sec-t/m1", smtpOK(map[string]interface{}{"pasword": m()}), 400, `"pasword"`, "")
	add("unknown field on ssh", "POST", "ssh/sec-t/k1", js(map[string]string{"privatekey": m()}), 400, `"privatekey"`, "")
	mk = m()
	add("private_key on dkim that is not a key", "POST", "dkim/sec-t/example.org", js(map[string]string{"private_key": mk}), 400, "invalid private_key", mk)
	mk = m()
	add("KV v2 data beside flat fields", "POST", "smtp/sec-t/m1", js(map[string]interface{}{"host": "smtp.example.com", "data": map[string]interface{}{"password": mk}}), 400, "cannot be mixed", mk)
	add("unknown field inside KV v2 data", "POST", "smtp/sec-t/m1", js(map[string]interface{}{"data": map[string]interface{}{"pasword": m()}}), 400, `"pasword"`, "")
	add("unknown field on config", "POST", "config", js(map[string]string{"smtp_password": m()}), 400, `"smtp_password"`, "")
	add("password on rotate", "POST", fixSMTP+"/rotate", js(map[string]string{"password": m()}), 400, `"password"`, "")
	add("unknown field on sign", "POST", fixDKIM+"/sign", js(map[string]string{"message": msg, "key": m()}), 400, `"key"`, "")
	add("unknown field on rotate-tenant", "POST", "rotate-tenant/sec-fix", `{"force": true}`, 400, `"force"`, "")
	add("unknown query on rotation/status", "GET", "rotation/status?owner=x", "", 400, `"owner"`, "")
	add("unknown query on delete", "DELETE", fixSMTP+"?purge=yes", "", 400, `"purge"`, "")
	add("unknown query on authorized_keys", "GET", fixSSH+"/authorized_keys?format=x", "", 400, `"format"`, "")
	add("unknown query on dns", "GET", fixDKIM+"/dns?zone=x", "", 400, `"zone"`, "")
	add("unknown query on history", "GET", fixSMTP+"/history?limit=1", "", 400, `"limit"`, "")
	add("unknown field on revoke", "POST", fixSSH+"/revoke", js(map[string]string{"reason": "r", "key": m()}), 400, `"key"`, "")
	add("unknown query on list", "LIST", "smtp/sec-fix?after=a", "", 400, `"after"`, "")

	// Huge values.
	add("1 MiB password", "POST", "smtp/sec-t/m1", smtpOK(map[string]interface{}{"password": huge(m())}), 400, "password", "")
	add("1 MiB username", "POST", "smtp/sec-t/m1", smtpOK(map[string]interface{}{"username": huge("u"), "password": m()}), 400, "username", "")
	add("1 MiB webmail_url", "POST", "smtp/sec-t/m1", smtpOK(map[string]interface{}{"webmail_url": huge("https://x/")}), 400, "webmail_url", "")
	add("1 MiB reason", "POST", fixSMTP+"/rotate", js(map[string]string{"reason": huge("r")}), 400, "reason", "")
	add("1 MiB incident_id", "POST", "rotate-tenant/sec-fix", js(map[string]string{"incident_id": huge("i")}), 400, "incident_id", "")
	add("1 MiB private_key", "POST", "ssh/sec-t/k1", js(map[string]string{"private_key": huge(m())}), 400, "private_key", "")
	add("1 MiB passphrase", "POST", fixSSH+"/private", js(map[string]string{"passphrase": huge(m())}), 400, "passphrase", "")
	add("1 MiB selector", "POST", "dkim/sec-t/example.org", js(map[string]string{"selector": huge("s")}), 400, "selector", "")
	add("1 MiB password_policy", "POST", "config", js(map[string]string{"password_policy": huge("p")}), 400, "password_policy", "")
	headers := make([]string, 10000)
	for i := range headers {
		headers[i] = "X-H"
	}
	add("10k headers on sign", "POST", fixDKIM+"/sign", js(map[string]interface{}{"message": msg, "headers": headers}), 400, "headers", "")
	add("name of 200 characters", "POST", "smtp/sec-t/"+strings.Repeat("n", 200), smtpOK(nil), 400, "name", "")
	add("tenant of 200 characters", "POST", "ssh/"+strings.Repeat("t", 200)+"/k1", "{}", 400, "tenant", "")

	// Bad base64 and PEM.
	add("sign message not base64", "POST", fixDKIM+"/sign", js(map[string]string{"message": "!!not base64 " + m()}), 400, "message", "")
	add("sign message bad padding", "POST", fixDKIM+"/sign", `{"message": "QUJD="}`, 400, "message", "")
	add("ssh key PEM with garbage", "POST", "ssh/sec-t/k1", js(map[string]string{"private_key": "-----BEGIN OPENSSH PRIVATE KEY-----\n" + m() + "\n-----END OPENSSH PRIVATE KEY-----\n"}), 400, "private_key", "")
	add("ssh key RSA PEM truncated", "POST", "ssh/sec-t/k1", js(map[string]string{"private_key": "-----BEGIN RSA PRIVATE KEY-----\nMIIB" + m() + "\n-----END RSA PRIVATE KEY-----\n"}), 400, "private_key", "")
	add("ssh key not PEM", "POST", "ssh/sec-t/k1", js(map[string]string{"private_key": "not a key " + m()}), 400, "private_key", "")
	add("ssh public_key without private_key", "POST", "ssh/sec-t/k1", js(map[string]string{"public_key": "ssh-ed25519 AAAA"}), 400, "public_key", "")

	// Traversal, plain and percent-encoded.
	add("encoded slash in name", "POST", "smtp/sec-t/..%2fconfig", smtpOK(nil), 400, "name", "")
	add("encoded dots as tenant", "POST", "smtp/%2e%2e/m1", smtpOK(nil), 400, "", "")
	add("dots in tenant", "POST", "ssh/sec-t..x/k1", "{}", 400, "tenant", "")
	add("hidden name", "POST", "ssh/sec-t/.k1", "{}", 400, "name", "")
	add("encoded dots on sign", "POST", "dkim/sec-fix/%2e%2e/sign", js(map[string]string{"message": msg}), 400, "", "")
	add("NUL in name (refused by Vault)", "POST", "smtp/sec-t/m1%00", smtpOK(nil), 400, "", "")
	add("encoded traversal on read", "GET", "smtp/sec-fix%2f..%2f..%2fconfig", "", 400, "name", "")
	add("traversal to config", "POST", "smtp/sec-t/..%2f..%2fconfig", `{"max_versions": 1}`, 400, "", "")

	// Wrong methods.
	add("GET rotate", "GET", fixSMTP+"/rotate", "", 405, "", "")
	add("DELETE sign", "DELETE", fixDKIM+"/sign", "", 405, "", "")
	add("GET dkim private (D3)", "GET", fixDKIM+"/private", "", 405, "", "")
	add("GET ssh private (D3)", "GET", fixSSH+"/private", "", 405, "", "")
	add("DELETE rotation/status", "DELETE", "rotation/status", "", 405, "", "")
	add("POST rotation/status", "POST", "rotation/status", "{}", 405, "", "")
	add("DELETE authorized_keys", "DELETE", fixSSH+"/authorized_keys", "", 405, "", "")
	add("POST history", "POST", fixSMTP+"/history", "{}", 405, "", "")
	add("POST dns", "POST", fixDKIM+"/dns", "{}", 405, "", "")
	add("DELETE config", "DELETE", "config", "", 405, "", "")
	add("GET rotate-tenant", "GET", "rotate-tenant/sec-fix", "", 405, "", "")
	// The way a passphrase ends up in a URL: "vault read .../private
	// passphrase=...", a GET. Export is an update, so it is refused before
	// any key is made. (On a POST, Vault drops the query string before the
	// engine sees it; its audit device still records the URI, so no engine
	// can keep a URL passphrase out of the audit log: ssh_test.go shows
	// the engine never uses it.) No marker, for that reason.
	add("passphrase in the query string of a read", "GET", fixSSH+"/private?passphrase=in-the-url", "", 405, "", "")

	// Non-canonical names (D1) and sign header injection.
	add("upper-case domain", "POST", "dkim/sec-fix/EXAMPLE.COM", "{}", 400, "dkim/sec-fix/example.com", "")
	add("trailing-dot domain", "POST", "dkim/sec-fix/example.com./private", "{}", 400, "dkim/sec-fix/example.com", "")
	add("full-width domain", "POST", "dkim/sec-fix/%EF%BD%85xample.com/sign", js(map[string]string{"message": msg}), 400, "dkim/sec-fix/example.com", "")
	add("upper-case selector", "POST", "dkim/sec-t/example.org", `{"selector": "MAIL1"}`, 400, "mail1", "")
	add("header injection on sign", "POST", fixDKIM+"/sign", js(map[string]string{"message": msg, "headers": "From,Subject;d=evil.example"}), 400, "headers", "")

	// Oversize durations and bounds.
	add("290-year rotation_period", "POST", "ssh/sec-t/k1", `{"rotation_period": "2540400h"}`, 400, "rotation_period", "")
	add("290-year ssh grace", "POST", "config", `{"ssh_grace_period": "2540400h"}`, 400, "ssh_grace_period", "")
	add("max_versions 1000", "POST", fixSMTP, `{"max_versions": 1000}`, 400, "max_versions", "")
	add("negative duration", "POST", "config", `{"dkim_grace_period": -5}`, 400, "dkim_grace_period", "")
	return rows
}

// mountState is what the table must not change: the tenants and names of
// every type, the fixtures' versions, and the config.
func mountState(t *testing.T) map[string]interface{} {
	t.Helper()
	state := map[string]interface{}{}
	l := client.Logical()
	for _, p := range []string{"smtp", "ssh", "dkim", "smtp/sec-fix", "ssh/sec-fix", "dkim/sec-fix", "smtp/sec-t", "ssh/sec-t", "dkim/sec-t"} {
		s, err := l.List(mount + "/" + p)
		if err != nil {
			t.Fatalf("list %s: %v", p, err)
		}
		var keys []string
		if s != nil {
			for _, k := range s.Data["keys"].([]interface{}) {
				keys = append(keys, k.(string))
			}
		}
		sort.Strings(keys)
		state["list "+p] = keys
	}
	for _, p := range []string{fixSMTP, fixSSH, fixDKIM, "config"} {
		s, err := readRaw(l, mount+"/"+p, nil)
		if err != nil {
			t.Fatalf("read %s: %v", p, err)
		}
		if v, ok := s.Data["current_version"]; ok {
			state[p] = fmt.Sprint(v, s.Data["status"])
		} else {
			state[p] = s.Data
		}
	}
	return state
}

func TestSecurity_MalformedRequestsTable(t *testing.T) {
	l := client.Logical()
	for path, data := range map[string]map[string]interface{}{
		fixSMTP: {"username": "u@example.com", "password": "fixture-Password-123", "host": "smtp.example.com", "port": 587, "encryption": "starttls"},
		fixSSH:  {}, fixDKIM: {},
	} {
		if _, err := l.Write(mount+"/"+path, data); err != nil {
			t.Fatalf("fixture %s: %v", path, err)
		}
		p := path
		t.Cleanup(func() { _, _ = l.Delete(mount + "/" + p) })
	}
	rememberSecret("fixture-Password-123")
	before := mountState(t)
	// Rows that other fixes must refuse may store today; leave the shared
	// server as it was for the other tests.
	t.Cleanup(func() {
		_, _ = l.Write(mount+"/config", before["config"].(map[string]interface{}))
		for _, p := range []string{"smtp/sec-t/m1", "ssh/sec-t/k1", "dkim/sec-t/example.org"} {
			_, _ = l.Delete(mount + "/" + p)
		}
	})
	rows := malformedRows(t)
	if len(rows) < 60 {
		t.Fatalf("the table has %d rows, want at least 60", len(rows))
	}
	var failed []string
	for i, r := range rows {
		status, msg := sendRaw(t, r.method, r.path, r.body)
		bad := status != r.status || !strings.Contains(msg, r.want) || (r.marker != "" && strings.Contains(msg, r.marker))
		if status >= 500 {
			t.Errorf("row %d %q: %s %s answered %d: %s", i, r.name, r.method, short(r.path), status, short(msg))
		}
		if bad {
			failed = append(failed, fmt.Sprintf("row %d %q: %s %s: got %d %q, want %d naming %q", i, r.name, r.method, short(r.path), status, short(msg), r.status, r.want))
		}
	}
	for _, f := range failed {
		t.Error(f)
	}
	after := mountState(t)
	for _, k := range sortedKeys(before, after) {
		if !reflect.DeepEqual(before[k], after[k]) {
			t.Errorf("the table changed %s:\nbefore %v\nafter  %v", k, before[k], after[k])
		}
	}
	if leaked := secretsInFile(auditLog); len(leaked) > 0 {
		t.Errorf("%d marker(s) in the audit log %s", len(leaked), auditLog)
	}
	if leaked := secretsInLog(); len(leaked) > 0 {
		t.Errorf("%d marker(s) in the Vault server log", len(leaked))
	}
}

// TestSecurity_WrongTypeSecretsStayOutOfAuditAndLog is finding 3 on its own:
// a secret field of the wrong JSON type must not reach the audit file or the
// server log through the error message.
func TestSecurity_WrongTypeSecretsStayOutOfAuditAndLog(t *testing.T) {
	if _, err := os.Stat(auditLog); err != nil {
		t.Fatalf("no audit log: %v", err)
	}
	for _, c := range []struct{ path, field string }{
		{"smtp/sec-a/m1", "password"}, {"ssh/sec-a/k1", "private_key"}, {"ssh/sec-a/k1", "passphrase"},
	} {
		for _, shape := range []string{"list", "object"} {
			mk := randomSecret(t, "PMSEC-")
			v := map[string]interface{}{"list": []interface{}{mk}, "object": map[string]interface{}{"k": mk}}[shape]
			status, msg := sendRaw(t, "POST", c.path, js(map[string]interface{}{c.field: v}))
			if status != 400 || !strings.Contains(msg, c.field) || strings.Contains(msg, mk) {
				t.Errorf("%s %s as %s: got %d %q; want 400 naming the field, not the value", c.path, c.field, shape, status, short(msg))
			}
		}
	}
	if leaked := secretsInFile(auditLog); len(leaked) > 0 {
		t.Errorf("%d marker(s) in the audit log", len(leaked))
	}
	if leaked := secretsInLog(); len(leaked) > 0 {
		t.Errorf("%d marker(s) in the Vault server log", len(leaked))
	}
}

func sortedKeys(maps ...map[string]interface{}) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

func short(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
