package integration

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"golang.org/x/crypto/ssh"
)

// The audit trail of the plugin's operations in the harness's file audit
// device: every kind of operation leaves a response entry that says when,
// what, on which path, who and from where; and no secret the test handled
// reaches the audit file or Vault's log (which carries the plugin's), in
// plain text, in base64 or as a PEM body.

// auditCall is one request the test made and expects in the audit log.
type auditCall struct {
	operation, path string
	failed          bool // refused: the entry must carry the error
}

// auditRun makes the requests of the test as one user and keeps what it
// must find in the audit log and must not find anywhere.
type auditRun struct {
	t       *testing.T
	c       *api.Client
	calls   []auditCall
	secrets []string
}

// secret marks v, and its base64, as values no log may contain.
func (r *auditRun) secret(v string) string {
	for _, s := range []string{v, base64.StdEncoding.EncodeToString([]byte(v))} {
		r.secrets = append(r.secrets, s)
		rememberSecret(s)
	}
	return v
}

// pem marks a private key: rememberKey's forms, and the text in base64.
func (r *auditRun) pem(text string) {
	r.secrets = append(r.secrets, rememberKey(text)...)
	r.secret(text)
}

// call sends one request that must answer want (a 2xx, or the error
// status given) and records the operation Vault should audit for it.
func (r *auditRun) call(operation, method, path string, data map[string]interface{}, want int) map[string]interface{} {
	r.t.Helper()
	got, answer := outcome(r.c, method, path, data)
	if !(want < 300 && got == allow || strings.HasPrefix(got, fmt.Sprintf("status %d:", want))) {
		r.t.Fatalf("%s %s: want status %d, got %s", method, path, want, got)
	}
	if method == "LIST" {
		path += "/"
	}
	r.calls = append(r.calls, auditCall{operation, path, want >= 300})
	return answer
}

func TestAudit_EveryOperationRecordedWithoutSecrets(t *testing.T) {
	password := policyUsers(t)
	c, entity := userClient(t, "admin", password, "admin")
	r := &auditRun{t: t, c: c}
	r.secret(password)
	tenant := "audit-" + randomHex(t, 4) // its own paths in the shared audit log
	p := func(rest string) string { return mount + "/" + strings.ReplaceAll(rest, "{t}", tenant) }

	auditSMTP(r, p)
	auditAPIKeys(r, p)
	auditDKIM(r, p, tenant)
	auditSSH(r, p)
	oauth := auditOAuth(r, p)
	auditMount(r, p, tenant)

	for _, s := range oauth.Issued() {
		r.secret(s)
	}
	entries := responseEntries(t)
	next := 0 // calls are found in order, each in an entry of its own
	for _, call := range r.calls {
		i := slices.IndexFunc(entries[next:], func(e auditEntry) bool {
			return e.Request.Operation == call.operation && e.Request.Path == call.path
		})
		if i < 0 {
			t.Fatalf("no response entry for %s %s after entry %d of the mount in %s", call.operation, call.path, next, auditLog)
		}
		checkAuditEntry(t, call, entries[next+i], entity)
		next += i + 1
	}
	// The scan below reads the right file: the paths are there in clear.
	if len(valuesIn(auditLog, []string{tenant})) == 0 {
		t.Fatalf("the audit log %s never names the tenant %s", auditLog, tenant)
	}
	t.Logf("%d operations audited, %d secret forms checked", len(r.calls), len(r.secrets))
	for _, file := range []string{auditLog, vaultLog} {
		if leaked := valuesIn(file, r.secrets); len(leaked) > 0 {
			t.Errorf("%d secret value(s) of this test appear in %s", len(leaked), file)
		}
	}
}

func auditSMTP(r *auditRun, p func(string) string) {
	r.call("create", http.MethodPut, p("smtp/{t}/mail"), map[string]interface{}{
		"username": "mail@example.com", "password": r.secret(randomSecret(r.t, "smtp-1-")), "host": "smtp.example.com"}, 200)
	r.call("read", http.MethodGet, p("smtp/{t}/mail"), nil, 200)
	r.call("list", "LIST", p("smtp/{t}"), nil, 200)
	r.call("update", http.MethodPut, p("smtp/{t}/mail"), map[string]interface{}{"password": r.secret(randomSecret(r.t, "smtp-2-"))}, 200)
	r.call("update", http.MethodPut, p("smtp/{t}/mail/rotate"), map[string]interface{}{"reason": "audit"}, 200)
	rotated := r.call("read", http.MethodGet, p("smtp/{t}/mail"), map[string]interface{}{"version": 3}, 200)
	r.secret(rotated["password"].(string))
	r.call("read", http.MethodGet, p("smtp/{t}/mail/history"), nil, 200)
	// A secret sent in the wrong shape: refused, and its message (which Vault
	// copies into the audit entry unhashed) must not quote it.
	r.call("update", http.MethodPut, p("smtp/{t}/mail"), map[string]interface{}{
		"password": []string{r.secret(randomSecret(r.t, "smtp-bad-"))}}, 400)
	r.call("delete", http.MethodDelete, p("smtp/{t}/mail"), nil, 204)
}

func auditAPIKeys(r *auditRun, p func(string) string) {
	sg, key, id := newSendGrid(r.t)
	r.secret(key)
	r.call("create", http.MethodPut, p("api-keys/{t}/sendgrid"), map[string]interface{}{"api_key": key, "api_key_id": id,
		"scopes": sendGridScopes, "key_name": "audit", "base_url": sg.URL()}, 200)
	r.call("read", http.MethodGet, p("api-keys/{t}/sendgrid"), nil, 200)
	r.call("update", http.MethodPut, p("api-keys/{t}/sendgrid/rotate"), map[string]interface{}{"reason": "audit"}, 200)
	next := r.call("read", http.MethodGet, p("api-keys/{t}/sendgrid"), nil, 200)
	r.secret(next["api_key"].(string))
	r.call("list", "LIST", p("api-keys/{t}"), nil, 200)
	r.call("delete", http.MethodDelete, p("api-keys/{t}/sendgrid"), nil, 200) // answers a warning: the old key is owed a removal
	// The mount's own provider account.
	r.call("create", http.MethodPut, p("config/providers/{t}"), map[string]interface{}{"provider": "sendgrid",
		"api_key": r.secret(randomSecret(r.t, "SG.audit-admin-"))}, 200)
	r.call("read", http.MethodGet, p("config/providers/{t}"), nil, 200)
	r.call("delete", http.MethodDelete, p("config/providers/{t}"), nil, 204)
}

func auditDKIM(r *auditRun, p func(string) string, tenant string) {
	d := "dkim/{t}/" + tenant + ".example.com"
	r.call("create", http.MethodPut, p(d), map[string]interface{}{"key_type": "ed25519", "activation": "immediate"}, 200)
	r.call("read", http.MethodGet, p(d), nil, 200)
	r.call("read", http.MethodGet, p(d+"/dns"), nil, 200)
	msg := base64.StdEncoding.EncodeToString([]byte(dkimMessage))
	r.call("update", http.MethodPut, p(d+"/sign"), map[string]interface{}{"message": msg}, 200)
	exported := r.call("update", http.MethodPut, p(d+"/private"), nil, 200)
	r.pem(exported["private_key"].(string))
	r.call("update", http.MethodPut, p(d+"/rotate"), map[string]interface{}{"reason": "audit"}, 200)
	exported = r.call("update", http.MethodPut, p(d+"/private"), nil, 200)
	r.pem(exported["private_key"].(string))
	r.call("update", http.MethodPut, p(d+"/revoke"), map[string]interface{}{"reason": "audit", "incident_id": "INC-AUDIT"}, 200)
	r.call("delete", http.MethodDelete, p(d), nil, 204)
}

func auditSSH(r *auditRun, p func(string) string) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		r.t.Fatal(err)
	}
	passphrase := r.secret(randomSecret(r.t, "ssh-pass-"))
	block, err := ssh.MarshalPrivateKeyWithPassphrase(key, "audit", []byte(passphrase))
	if err != nil {
		r.t.Fatal(err)
	}
	imported := string(pem.EncodeToMemory(block))
	r.pem(imported)
	plain, err := ssh.MarshalPrivateKey(key, "audit")
	if err != nil {
		r.t.Fatal(err)
	}
	r.pem(string(pem.EncodeToMemory(plain))) // the same key unencrypted, as a leak would show it
	r.call("create", http.MethodPut, p("ssh/{t}/key"), map[string]interface{}{"private_key": imported, "passphrase": passphrase}, 200)
	r.call("read", http.MethodGet, p("ssh/{t}/key"), nil, 200)
	r.call("read", http.MethodGet, p("ssh/{t}/key/authorized_keys"), nil, 200)
	exported := r.call("update", http.MethodPut, p("ssh/{t}/key/private"), map[string]interface{}{
		"passphrase": r.secret(randomSecret(r.t, "ssh-export-"))}, 200)
	r.pem(exported["private_key"].(string))
	r.call("update", http.MethodPut, p("ssh/{t}/key/rotate"), map[string]interface{}{"reason": "audit"}, 200)
	exported = r.call("update", http.MethodPut, p("ssh/{t}/key/private"), nil, 200)
	r.pem(exported["private_key"].(string))
	r.call("update", http.MethodPut, p("ssh/{t}/key/revoke"), map[string]interface{}{"reason": "audit"}, 200)
	r.call("update", http.MethodPut, p("ssh/{t}/key/private"), nil, 409) // revoked: refused, and audited
	r.call("list", "LIST", p("ssh/{t}"), nil, 200)
	r.call("delete", http.MethodDelete, p("ssh/{t}/key"), nil, 204)
}

func auditOAuth(r *auditRun, p func(string) string) interface{ Issued() []string } {
	f := startOAuthFake(r.t)
	r.secret(oauthClientSecret)
	rt := r.secret(f.IssueRefreshToken())
	r.call("create", http.MethodPut, p("oauth/{t}/gmail"), map[string]interface{}{"client_id": "it-client",
		"client_secret": oauthClientSecret, "token_url": f.TokenURL(), "auth_url": f.URL() + "/authorize", "refresh_token": rt}, 200)
	read := r.call("read", http.MethodGet, p("oauth/{t}/gmail"), nil, 200)
	r.secret(read["access_token"].(string))
	r.call("update", http.MethodPut, p("oauth/{t}/gmail/auth_url"), map[string]interface{}{"redirect_uri": "https://app.example.com/cb"}, 200)
	r.call("update", http.MethodPut, p("oauth/{t}/gmail/rotate"), map[string]interface{}{"reason": "audit"}, 200)
	r.call("delete", http.MethodDelete, p("oauth/{t}/gmail"), nil, 204)
	return f
}

// auditMount covers what spans secrets: config, jobs and status. config is
// written back with its own value, so other tests see no change.
func auditMount(r *auditRun, p func(string) string, tenant string) {
	cfg := r.call("read", http.MethodGet, p("config"), nil, 200)
	r.call("update", http.MethodPut, p("config"), map[string]interface{}{"history_limit": cfg["history_limit"]}, 200)
	job := r.call("update", http.MethodPut, p("rotate-tenant/{t}"), map[string]interface{}{"types": "ssh", "reason": "audit"}, 200)
	r.call("read", http.MethodGet, p("rotate/jobs/"+job["job_id"].(string)), nil, 200)
	r.call("update", http.MethodPut, p("rotate/bulk"), map[string]interface{}{"tenant": tenant, "status": "overdue", "reason": "audit"}, 200)
	r.call("read", http.MethodGet, p("rotation/status"), map[string]interface{}{"tenant": tenant}, 200)
	r.call("read", http.MethodGet, p("rotation/status/{t}"), nil, 200)
}

// auditEntry is what the checks read of a Vault audit log line.
type auditEntry struct {
	Time string `json:"time"`
	Type string `json:"type"`
	Auth struct {
		DisplayName string `json:"display_name"`
		EntityID    string `json:"entity_id"`
	} `json:"auth"`
	Request struct {
		Operation     string                 `json:"operation"`
		Path          string                 `json:"path"`
		RemoteAddress string                 `json:"remote_address"`
		Data          map[string]interface{} `json:"data"`
	} `json:"request"`
	Response struct {
		Data map[string]interface{} `json:"data"`
	} `json:"response"`
	Error string `json:"error"`
}

// failed says whether the entry records a refusal: Vault's error, or the
// engine's error response (a 400), whose message is HMACed with the data.
func (e auditEntry) failed() bool { return e.Error != "" || e.Response.Data["error"] != nil }

// responseEntries reads the audit log's response entries of the mount, in
// the order Vault wrote them.
func responseEntries(t *testing.T) []auditEntry {
	t.Helper()
	f, err := os.Open(auditLog)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	var out []auditEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e auditEntry
		if !bytes.Contains(sc.Bytes(), []byte(`"response"`)) || json.Unmarshal(sc.Bytes(), &e) != nil || e.Type != "response" {
			continue
		}
		if strings.HasPrefix(e.Request.Path, mount+"/") {
			out = append(out, e)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("audit log: %v", err)
	}
	return out
}

func checkAuditEntry(t *testing.T, call auditCall, e auditEntry, entity string) {
	t.Helper()
	if _, err := time.Parse(time.RFC3339Nano, e.Time); err != nil {
		t.Errorf("%s %s: time %q: %v", call.operation, call.path, e.Time, err)
	}
	if e.Auth.EntityID != entity || e.Auth.DisplayName != "userpass-admin" {
		t.Errorf("%s %s: entity_id %q, display_name %q; want %s, userpass-admin", call.operation, call.path, e.Auth.EntityID, e.Auth.DisplayName, entity)
	}
	if call.failed != e.failed() {
		t.Errorf("%s %s: the entry records a failure: %v (error %q, response error %v); the request failed: %v",
			call.operation, call.path, e.failed(), e.Error, e.Response.Data["error"], call.failed)
	}
	if e.Request.RemoteAddress != "127.0.0.1" {
		t.Errorf("%s %s: remote_address %q, want 127.0.0.1", call.operation, call.path, e.Request.RemoteAddress)
	}
	// Request data reaches the log only as HMACs.
	for k, v := range e.Request.Data {
		if s, ok := v.(string); ok && s != "" && !strings.HasPrefix(s, "hmac-sha256:") {
			t.Errorf("%s %s: request field %s is in the audit log unhashed", call.operation, call.path, k)
		}
	}
}
