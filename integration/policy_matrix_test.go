package integration

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// The role policies of policies/*.hcl, proven in the real Vault: the users
// scripts/policies.sh makes log in through userpass, as entities, and each
// role tries each operation on its own tenant and on another one.

// The two tenants of the matrix. scripts/policies.sh names its tenant users
// tenant-1 and tenant-2 by default; other tests use those tenants, so this
// one gives its own (PM_TENANTS), which keeps its jobs to its own secrets.
const (
	aclTenantA = "acl-tenant-a"
	aclTenantB = "acl-tenant-b"
)

// aclRoles are the users scripts/policies.sh makes, one per role.
var aclRoles = []string{"system", "admin", "operator", "developer", "rotation-service", "dkim-signer"}

// installPolicies runs scripts/policies.sh against the test Vault and returns
// the users' password, which it remembers as a secret.
func installPolicies(t *testing.T, password string) string {
	t.Helper()
	cmd := exec.Command("bash", "../scripts/policies.sh")
	cmd.Env = append(envFor(vaultAddr, rootToken), "VAULT="+vaultBin, "PM_USER_PASSWORD="+password,
		"PM_TENANTS="+aclTenantA+" "+aclTenantB)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/policies.sh: %v\n%s", err, out)
	}
	if strings.Contains(string(out), password) {
		t.Fatalf("scripts/policies.sh printed the users' password:\n%s", out)
	}
	return string(out)
}

// policyUsers installs the policies and the sample users once per test run
// and returns their password.
func policyUsers(t *testing.T) string {
	t.Helper()
	policySetup.Lock()
	defer policySetup.Unlock()
	if policySetup.password == "" {
		password := randomSecret(t, "pw-")
		installPolicies(t, password)
		policySetup.password = password
	}
	return policySetup.password
}

var policySetup struct {
	sync.Mutex
	password string
}

// userClient logs user in through userpass and returns a client with its
// token, after checking that the token belongs to the user's entity and
// carries policy as an identity policy.
func userClient(t *testing.T, user, password, policy string) (*api.Client, string) {
	t.Helper()
	c, err := newClientFor(vaultAddr, "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Logical().Write("auth/userpass/login/"+user, map[string]interface{}{"password": password})
	if err != nil || s == nil || s.Auth == nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	rememberSecret(s.Auth.ClientToken)
	c.SetToken(s.Auth.ClientToken)
	self, err := c.Auth().Token().LookupSelf()
	if err != nil {
		t.Fatalf("token lookup of %s: %v", user, err)
	}
	entity, _ := self.Data["entity_id"].(string)
	want, err := client.Logical().Read("identity/entity/name/" + user)
	if err != nil || want == nil {
		t.Fatalf("entity %s: %v", user, err)
	}
	if entity == "" || entity != want.Data["id"] {
		t.Fatalf("%s's token has entity_id %q, want the entity %s (%v)", user, entity, user, want.Data["id"])
	}
	var idPolicies []string
	for _, p := range self.Data["identity_policies"].([]interface{}) {
		idPolicies = append(idPolicies, p.(string))
	}
	if !slices.Contains(idPolicies, policy) {
		t.Fatalf("%s's token has identity policies %v, want %s", user, idPolicies, policy)
	}
	return c, entity
}

// Outcomes of one request.
const (
	allow = "allow"
	deny  = "deny"
)

// outcome sends one request with c and says allow (2xx), deny (403
// permission denied) or what else happened: a 400, a 404 or a 409 is
// neither, and fails the cell, so only the policy decides the answer.
func outcome(c *api.Client, method, path string, data map[string]interface{}) (string, map[string]interface{}) {
	r := c.NewRequest(method, "/v1/"+path)
	if method == http.MethodGet || method == "LIST" {
		for k, v := range data {
			r.Params.Set(k, fmt.Sprint(v))
		}
	} else if data != nil {
		if method == http.MethodPatch {
			r.Headers = http.Header{"Content-Type": []string{"application/merge-patch+json"}}
		}
		if err := r.SetJSONBody(data); err != nil {
			return "error: " + err.Error(), nil
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	resp, err := c.RawRequestWithContext(ctx, r)
	if resp == nil {
		return "error: " + err.Error(), nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var parsed struct {
		Data   map[string]interface{} `json:"data"`
		Errors []string               `json:"errors"`
	}
	_ = json.Unmarshal(body, &parsed)
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return allow, parsed.Data
	case resp.StatusCode == http.StatusForbidden && strings.Contains(strings.Join(parsed.Errors, " "), "permission denied"):
		return deny, nil
	}
	return fmt.Sprintf("status %d: %s", resp.StatusCode, strings.Join(parsed.Errors, "; ")), nil
}

// aclFixtures is what root writes before the matrix: per tenant an SMTP
// login, a Postmark and a SendGrid key, an OAuth grant, a DKIM domain that
// activates its keys at once, an SSH key; and one tenant job.
type aclFixtures struct {
	job          string
	message      string      // a base64 message to sign
	historyLimit interface{} // config's, written back unchanged by the config write cells
}

func aclDomain(tenant string) string { return tenant + ".example.com" }

func writeACLFixtures(t *testing.T) aclFixtures {
	t.Helper()
	l := client.Logical()
	must := func(path string, data map[string]interface{}) map[string]interface{} {
		t.Helper()
		s, err := l.Write(mount+"/"+path, data)
		if err != nil {
			t.Fatalf("fixture %s: %v", path, err)
		}
		if s == nil {
			return nil
		}
		return s.Data
	}
	oauth := startOAuthFake(t)
	must("config/providers/acl-sendgrid", map[string]interface{}{"provider": "sendgrid", "api_key": randomSecret(t, "SG.acl-admin-")})
	cleanupPath(t, mount+"/config/providers/acl-sendgrid")
	for _, tenant := range []string{aclTenantA, aclTenantB} {
		must("smtp/"+tenant+"/mail", map[string]interface{}{"username": "mail@" + aclDomain(tenant),
			"password": randomSecret(t, "smtp-pw-"), "host": "smtp.example.com"})
		must("api-keys/"+tenant+"/postmark", map[string]interface{}{"server_token": randomSecret(t, "pm-token-")})
		must("api-keys/"+tenant+"/sendgrid", map[string]interface{}{"api_key": randomSecret(t, "SG.acl-"),
			"api_key_id": "acl-" + tenant, "scopes": "mail.send"})
		rt := oauth.IssueRefreshToken()
		rememberSecret(rt)
		must("oauth/"+tenant+"/gmail", map[string]interface{}{"client_id": "it-client", "client_secret": oauthClientSecret,
			"token_url": oauth.TokenURL(), "auth_url": oauth.URL() + "/authorize", "refresh_token": rt})
		must("dkim/"+tenant+"/"+aclDomain(tenant), map[string]interface{}{"key_type": "ed25519", "activation": "immediate"})
		must("ssh/"+tenant+"/key", map[string]interface{}{"key_type": "ed25519"})
		for _, p := range []string{"smtp/" + tenant + "/mail", "api-keys/" + tenant + "/postmark", "api-keys/" + tenant + "/sendgrid",
			"oauth/" + tenant + "/gmail", "dkim/" + tenant + "/" + aclDomain(tenant), "ssh/" + tenant + "/key"} {
			cleanupPath(t, mount+"/"+p)
		}
	}
	job := must("rotate-tenant/"+aclTenantA, map[string]interface{}{"types": "ssh", "reason": "acl matrix fixture"})
	msg := base64.StdEncoding.EncodeToString([]byte(dkimMessage))
	cfg, err := l.Read(mount + "/config")
	if err != nil || cfg == nil {
		t.Fatalf("config: %v", err)
	}
	return aclFixtures{job: job["job_id"].(string), message: msg, historyLimit: cfg.Data["history_limit"]}
}

// aclOp is one operation of the matrix. do sends it as user on tenant
// (empty for operations that span tenants). allowed lists the roles it is
// allowed for; "tenant" means on its own tenant only.
type aclOp struct {
	name    string
	global  bool
	allowed []string
	setup   func(t *testing.T, user, tenant string) // root prepares the cell, if it needs to
	do      func(user, tenant string) (method, path string, data map[string]interface{})
}

var (
	everyAdmin = []string{"system", "admin"}
	readers    = []string{"system", "admin", "operator"}
)

func with(roles []string, more ...string) []string { return append(slices.Clone(roles), more...) }

func aclOps(fx aclFixtures) []aclOp {
	get := func(path string, q map[string]interface{}) func(string, string) (string, string, map[string]interface{}) {
		return func(_, tenant string) (string, string, map[string]interface{}) {
			return http.MethodGet, mount + "/" + strings.ReplaceAll(path, "{t}", tenant), q
		}
	}
	put := func(path string, body map[string]interface{}) func(string, string) (string, string, map[string]interface{}) {
		return func(_, tenant string) (string, string, map[string]interface{}) {
			return http.MethodPut, mount + "/" + strings.ReplaceAll(path, "{t}", tenant), body
		}
	}
	patch := func(path string, body map[string]interface{}) func(string, string) (string, string, map[string]interface{}) {
		return func(_, tenant string) (string, string, map[string]interface{}) {
			return http.MethodPatch, mount + "/" + strings.ReplaceAll(path, "{t}", tenant), body
		}
	}
	list := func(path string) func(string, string) (string, string, map[string]interface{}) {
		return func(_, tenant string) (string, string, map[string]interface{}) {
			return "LIST", mount + "/" + strings.ReplaceAll(path, "{t}", tenant), nil
		}
	}
	dkim := func(sub string) string { return "dkim/{t}/{d}" + sub }
	withDomain := func(f func(string, string) (string, string, map[string]interface{})) func(string, string) (string, string, map[string]interface{}) {
		return func(user, tenant string) (string, string, map[string]interface{}) {
			m, p, d := f(user, tenant)
			return m, strings.ReplaceAll(p, "{d}", aclDomain(tenant)), d
		}
	}
	smtpNew := map[string]interface{}{"username": "new@example.com", "host": "smtp.example.com"}
	reason := map[string]interface{}{"reason": "acl matrix"}
	return []aclOp{
		{name: "smtp read", allowed: with(readers, "tenant"), do: get("smtp/{t}/mail", nil)},
		{name: "smtp create", allowed: with(everyAdmin, "tenant"), setup: deleteWhenDone("smtp", "new"), do: func(user, tenant string) (string, string, map[string]interface{}) {
			return http.MethodPut, mount + "/smtp/" + tenant + "/new-" + user, smtpNew
		}},
		{name: "smtp update", allowed: with(everyAdmin, "tenant"), do: put("smtp/{t}/mail", map[string]interface{}{"port": 587})},
		{name: "smtp patch", allowed: with(everyAdmin, "tenant"), do: patch("smtp/{t}/mail", map[string]interface{}{"port": 587})},
		{name: "smtp list", allowed: with(readers, "tenant"), do: list("smtp/{t}")},
		{name: "smtp delete", allowed: everyAdmin, setup: writeDeleteFixture, do: func(user, tenant string) (string, string, map[string]interface{}) {
			return http.MethodDelete, mount + "/smtp/" + tenant + "/del-" + user, nil // written by root before the cell
		}},
		{name: "smtp rotate", allowed: with(everyAdmin, "tenant", "rotation-service"), do: put("smtp/{t}/mail/rotate", reason)},
		{name: "smtp history", allowed: with(readers, "tenant"), do: get("smtp/{t}/mail/history", nil)},
		{name: "api-keys read", allowed: with(readers, "developer", "tenant"), do: get("api-keys/{t}/postmark", nil)},
		{name: "api-keys list", allowed: with(readers, "developer", "tenant"), do: list("api-keys/{t}")},
		{name: "api-keys update", allowed: with(everyAdmin, "tenant"), do: put("api-keys/{t}/postmark", map[string]interface{}{"message_stream": "outbound"})},
		{name: "api-keys platform account", allowed: everyAdmin, do: put("api-keys/{t}/sendgrid", map[string]interface{}{"account": "acl-sendgrid"})},
		// The KV v2 shape must not carry a denied parameter past the policy:
		// Vault checks parameters at the top level only.
		{name: "api-keys platform account in data", allowed: everyAdmin, do: put("api-keys/{t}/sendgrid",
			map[string]interface{}{"data": map[string]interface{}{"account": "acl-sendgrid"}})},
		{name: "oauth read", allowed: with(readers, "tenant"), do: get("oauth/{t}/gmail", nil)},
		{name: "oauth consent", allowed: with(everyAdmin, "tenant"), do: put("oauth/{t}/gmail/auth_url", map[string]interface{}{"redirect_uri": "https://app.example.com/cb"})},
		{name: "oauth rotate", allowed: with(everyAdmin, "tenant", "rotation-service"), do: put("oauth/{t}/gmail/rotate", reason)},
		{name: "dkim read", allowed: with(readers, "tenant"), do: withDomain(get(dkim(""), nil))},
		{name: "dkim update", allowed: everyAdmin, do: withDomain(put(dkim(""), map[string]interface{}{"selector_prefix": "pm"}))},
		{name: "dkim dns", allowed: with(readers, "tenant"), do: withDomain(get(dkim("/dns"), nil))},
		{name: "dkim sign", allowed: with(everyAdmin, "tenant", "dkim-signer"), do: withDomain(put(dkim("/sign"), map[string]interface{}{"message": fx.message}))},
		{name: "dkim private export", allowed: everyAdmin, do: withDomain(put(dkim("/private"), nil))},
		{name: "dkim rotate", allowed: with(everyAdmin, "rotation-service"), do: withDomain(put(dkim("/rotate"), reason))},
		{name: "dkim activate", allowed: with(everyAdmin, "rotation-service"), setup: writePendingDKIM, do: func(user, tenant string) (string, string, map[string]interface{}) {
			return http.MethodPut, mount + "/dkim/" + tenant + "/" + activateDomain(user, tenant) + "/activate", reason
		}},
		{name: "dkim list", allowed: with(readers, "tenant"), do: list("dkim/{t}")},
		{name: "ssh create", allowed: everyAdmin, setup: deleteWhenDone("ssh", "new"), do: func(user, tenant string) (string, string, map[string]interface{}) {
			return http.MethodPut, mount + "/ssh/" + tenant + "/new-" + user, map[string]interface{}{"key_type": "ed25519"}
		}},
		{name: "ssh read", allowed: with(readers, "tenant"), do: get("ssh/{t}/key", nil)},
		{name: "ssh update", allowed: everyAdmin, do: put("ssh/{t}/key", map[string]interface{}{"one_time_download": false})},
		{name: "ssh authorized_keys", allowed: with(readers, "tenant"), do: get("ssh/{t}/key/authorized_keys", nil)},
		{name: "ssh private export", allowed: everyAdmin, do: put("ssh/{t}/key/private", nil)},
		{name: "ssh rotate", allowed: with(everyAdmin, "rotation-service"), do: put("ssh/{t}/key/rotate", reason)},
		{name: "status by tenant query", allowed: with(readers, "rotation-service"), do: get("rotation/status", map[string]interface{}{"tenant": "{t}"})},
		{name: "status by tenant path", allowed: with(readers, "rotation-service", "tenant"), do: get("rotation/status/{t}", nil)},
		{name: "tenant rotation job", allowed: with(everyAdmin, "rotation-service"), do: put("rotate-tenant/{t}", map[string]interface{}{"types": "ssh", "reason": "acl matrix"})},
		{name: "bulk rotation job", allowed: with(everyAdmin, "rotation-service"), do: put("rotate/bulk",
			map[string]interface{}{"tenant": "{t}", "types": "ssh", "status": "overdue", "reason": "acl matrix"})},

		{name: "list tenants", global: true, allowed: readers, do: list("smtp")},
		{name: "status of every tenant", global: true, allowed: with(readers, "rotation-service"), do: get("rotation/status", nil)},
		{name: "config read", global: true, allowed: everyAdmin, do: get("config", nil)},
		{name: "config write", global: true, allowed: everyAdmin, do: put("config", map[string]interface{}{"history_limit": fx.historyLimit})},
		{name: "provider accounts list", global: true, allowed: everyAdmin, do: list("config/providers")},
		{name: "jobs list", global: true, allowed: with(readers, "rotation-service"), do: list("rotate/jobs")},
		{name: "job read", global: true, allowed: with(readers, "rotation-service"), do: get("rotate/jobs/"+fx.job, nil)},
		{name: "dkim domain owner", global: true, allowed: readers, do: get("dkim-domains/"+aclDomain(aclTenantA), nil)},
		{name: "mount tune", global: true, allowed: []string{"system"}, do: func(string, string) (string, string, map[string]interface{}) {
			return http.MethodGet, "sys/mounts/" + mount + "/tune", nil
		}},
	}
}

// aclUser is one row of the matrix: a user, its role, and the tenant it
// calls its own (every user but a tenant's has none: both tenants are
// another's to it, and it gets the same answer on both).
type aclUser struct {
	name, role, own string
	client          *api.Client
}

func (u aclUser) expect(op aclOp, tenant string) string {
	if !slices.Contains(op.allowed, u.role) {
		return deny
	}
	if u.role == "tenant" && tenant != u.own {
		return deny // every cross-tenant attempt of a tenant
	}
	return allow
}

// fillQuery replaces {t} in query values too (rotation/status?tenant=).
func fillQuery(data map[string]interface{}, tenant string) map[string]interface{} {
	if data == nil {
		return nil
	}
	out := make(map[string]interface{}, len(data))
	for k, v := range data {
		if s, ok := v.(string); ok {
			v = strings.ReplaceAll(s, "{t}", tenant)
		}
		out[k] = v
	}
	return out
}

// rememberExport marks the private key an allowed export answered.
func rememberExport(data map[string]interface{}) {
	if pk, ok := data["private_key"].(string); ok {
		rememberKey(pk)
	}
}

func TestPolicies_RoleTenantMatrix(t *testing.T) {
	password := policyUsers(t)
	first := entityIDs(t)
	// The script can run again: same entities, same aliases, same logins.
	out := installPolicies(t, password)
	if again := entityIDs(t); !maps.Equal(first, again) {
		t.Fatalf("a second run changed the entities: %v, then %v", first, again)
	}
	for _, user := range append(slices.Clone(aclRoles), aclTenantA, aclTenantB) {
		if !strings.Contains(out, "  "+user+":") {
			t.Errorf("scripts/policies.sh does not report the user %s:\n%s", user, out)
		}
	}
	fx := writeACLFixtures(t)

	var users []aclUser
	for _, role := range aclRoles {
		c, _ := userClient(t, role, password, role)
		users = append(users, aclUser{name: role, role: role, client: c})
	}
	for _, tenant := range []string{aclTenantA, aclTenantB} {
		c, entity := userClient(t, tenant, password, "tenant")
		e, err := client.Logical().Read("identity/entity/id/" + entity)
		if err != nil || e == nil || e.Data["metadata"].(map[string]interface{})["tenant_id"] != tenant {
			t.Fatalf("entity of %s: metadata %v (%v), want tenant_id=%s", tenant, e, err, tenant)
		}
		users = append(users, aclUser{name: tenant, role: "tenant", own: tenant, client: c})
	}

	ops := aclOps(fx)
	cells, denied, crossTenant := 0, 0, 0
	for _, u := range users {
		for _, op := range ops {
			tenants := []string{aclTenantA, aclTenantB}
			if op.global {
				tenants = []string{""}
			}
			for _, tenant := range tenants {
				if op.setup != nil {
					op.setup(t, u.name, tenant)
				}
				method, path, data := op.do(u.name, tenant)
				got, answer := outcome(u.client, method, path, fillQuery(data, tenant))
				rememberExport(answer)
				want := u.expect(op, tenant)
				if got != want {
					t.Errorf("role %s (user %s), %s, %s %s: expected %s, got %s", u.role, u.name, op.name, method, path, want, got)
				}
				cells++
				if want == deny {
					denied++
				}
				if u.role == "tenant" && tenant != "" && tenant != u.own {
					crossTenant++
				}
			}
		}
	}
	t.Logf("%d cells (%d denied), %d cross-tenant attempts by tenants, all denied", cells, denied, crossTenant)
	if cells < 80 || crossTenant == 0 || denied == 0 || denied == cells {
		t.Fatalf("the matrix is too small to prove anything: %d cells, %d denied, %d cross-tenant", cells, denied, crossTenant)
	}
}

// writeDeleteFixture writes smtp/{tenant}/del-{user} as root, for user's
// delete cell; the cleanup removes it when the delete was denied.
func writeDeleteFixture(t *testing.T, user, tenant string) {
	t.Helper()
	path := mount + "/smtp/" + tenant + "/del-" + user
	if _, err := client.Logical().Write(path, map[string]interface{}{"username": "del@example.com", "host": "smtp.example.com"}); err != nil {
		t.Fatalf("fixture %s: %v", path, err)
	}
	deleteWhenDone("smtp", "del")(t, user, tenant)
}

// activateDomain is the DKIM domain of user's activate cell on tenant.
func activateDomain(user, tenant string) string { return "act-" + user + "." + aclDomain(tenant) }

// writePendingDKIM creates, as root, a domain whose first key awaits
// activation (the default delay), for user's activate cell.
func writePendingDKIM(t *testing.T, user, tenant string) {
	t.Helper()
	path := mount + "/dkim/" + tenant + "/" + activateDomain(user, tenant)
	if _, err := client.Logical().Write(path, map[string]interface{}{"key_type": "ed25519", "activation": "delay"}); err != nil {
		t.Fatalf("fixture %s: %v", path, err)
	}
	t.Cleanup(func() { _, _ = client.Logical().Delete(path) })
}

// deleteWhenDone removes {kind}/{tenant}/{prefix}-{user} when the test ends.
func deleteWhenDone(kind, prefix string) func(t *testing.T, user, tenant string) {
	return func(t *testing.T, user, tenant string) {
		path := mount + "/" + kind + "/" + tenant + "/" + prefix + "-" + user
		t.Cleanup(func() { _, _ = client.Logical().Delete(path) })
	}
}

// entityIDs maps every sample user to its entity id and alias count.
func entityIDs(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, user := range append(slices.Clone(aclRoles), aclTenantA, aclTenantB) {
		e, err := client.Logical().Read("identity/entity/name/" + user)
		if err != nil || e == nil {
			t.Fatalf("entity %s: %v", user, err)
		}
		aliases, _ := e.Data["aliases"].([]interface{})
		out[user] = fmt.Sprintf("%v (%d aliases)", e.Data["id"], len(aliases))
		if len(aliases) != 1 {
			t.Fatalf("entity %s has %d aliases, want 1", user, len(aliases))
		}
	}
	return out
}
