package integration

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailgun/mailgunfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/mailu/mailufake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/postmark/postmarkfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/providertest"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/sendgrid/sendgridfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider/ses/sesfake"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/smtplogin"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/smtplogin/smtpfake"
)

// API keys and the Mailu SMTP driver through the real server: the plugin
// process reaches the fake providers this test process runs on 127.0.0.1,
// so every create, test and delete below is a real HTTP call from inside
// Vault.

// sendGridScopes let a key create, read and delete its own successors.
const sendGridScopes = "api_keys.create,api_keys.delete,api_keys.read,mail.send"

// newSendGrid starts a SendGrid fake with one seeded key for the engine.
func newSendGrid(t *testing.T) (*sendgridfake.Server, string, string) {
	t.Helper()
	f := sendgridfake.New()
	t.Cleanup(f.Close)
	k := f.AddKey("tenant mail", strings.Split(sendGridScopes, ",")...)
	rememberSecret(k.Secret)
	return f, k.Secret, k.ID
}

// writeSendGridKey stores the seeded key at path through the CLI.
func writeSendGridKey(t *testing.T, path string, f *sendgridfake.Server, secret, id string) {
	t.Helper()
	vaultCLI(t, "write", path, "api_key="+secret, "api_key_id="+id, "scopes="+sendGridScopes,
		"key_name=tenant mail", "base_url="+f.URL())
	cleanupPath(t, path)
}

// cleanupPath deletes a secret or config entry when the test ends.
func cleanupPath(t *testing.T, path string) {
	t.Cleanup(func() {
		if out, err := runVault("delete", path); err != nil {
			t.Logf("cleanup: vault delete %s: %v\n%s", path, err, out)
		}
	})
}

// rotateCLI rotates through the CLI and returns the new current version's
// secret field, remembered for the leak check.
func rotateCLI(t *testing.T, path, field string, args ...string) (int, string) {
	t.Helper()
	rot := cliData(t, append([]string{"write", "-f", path + "/rotate"}, args...)...)
	cur := cliData(t, "read", path)
	secret, _ := cur[field].(string)
	rememberSecret(secret)
	if num(cur["current_version"]) != num(rot["version"]) || secret == "" {
		t.Fatalf("after rotate of %s: rotate answered version %v, read shows current_version %v with %s set %t",
			path, rot["version"], cur["current_version"], field, secret != "")
	}
	return num(rot["version"]), secret
}

// sorted returns the strings in order, for comparison with a fake's Live.
func sorted(s ...string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// checkLive fails unless the fake accepts exactly want; it never prints a
// key, only how many matched.
func checkLive(t *testing.T, what string, live []string, want ...string) {
	t.Helper()
	if !slices.Equal(live, sorted(want...)) {
		t.Fatalf("%s: the provider accepts %d keys, want exactly %d (the expected ones: %d of them live)",
			what, len(live), len(want), countIn(live, want))
	}
}

func countIn(live, want []string) int {
	n := 0
	for _, w := range want {
		if slices.Contains(live, w) {
			n++
		}
	}
	return n
}

// oneCreate fails unless the fake got exactly one create request, with the
// auth header check accepts.
func oneCreate(t *testing.T, what string, reqs []providertest.Request, check func(providertest.Request) bool) {
	t.Helper()
	if len(reqs) != 1 || !check(reqs[0]) {
		t.Fatalf("%s: %d create requests at the provider, want one, properly authenticated", what, len(reqs))
	}
}

// TestAPIKeys_UserFlowThroughCLI writes, reads, lists and rotates a key of
// each provider with the vault CLI, and checks at the provider that the
// rotation made a new key and left exactly the new and the previous one
// valid during the overlap.
func TestAPIKeys_UserFlowThroughCLI(t *testing.T) {
	const tenant = mount + "/api-keys/tenant-1"

	// SendGrid: the key rotates itself (its scopes include api_keys.*).
	sg, sgOld, sgID := newSendGrid(t)
	writeSendGridKey(t, tenant+"/sendgrid", sg, sgOld, sgID)

	// Mailgun: a domain sending key, rotated with the admin key of
	// config/providers/mg-admin.
	mg := mailgunfake.New()
	t.Cleanup(mg.Close)
	mgAdmin := mg.AddKey("admin", "vault admin", "")
	mgOld := mg.AddKey("sending", "tenant mail", "mg.example.com")
	rememberSecret(mgAdmin.Secret)
	rememberSecret(mgOld.Secret)
	vaultCLI(t, "write", mount+"/config/providers/mg-admin", "provider=mailgun", "api_key="+mgAdmin.Secret, "base_url="+mg.URL())
	cleanupPath(t, mount+"/config/providers/mg-admin")
	vaultCLI(t, "write", tenant+"/mailgun", "api_key="+mgOld.Secret, "key_id="+mgOld.ID, "role=sending",
		"domain=mg.example.com", "key_name=tenant mail", "account=mg-admin", "base_url="+mg.URL())
	cleanupPath(t, tenant+"/mailgun")

	// SES: an IAM user's access key, rotated with config/providers/aws.
	aws := sesfake.New()
	t.Cleanup(aws.Close)
	awsAdmin := aws.AddKey("vault-admin")
	sesOld := aws.AddKey("ses-sender")
	rememberSecret(awsAdmin.Secret)
	rememberSecret(sesOld.Secret)
	vaultCLI(t, "write", mount+"/config/providers/aws", "provider=ses",
		"access_key_id="+awsAdmin.ID, "secret_access_key="+awsAdmin.Secret, "base_url="+aws.URL())
	cleanupPath(t, mount+"/config/providers/aws")
	vaultCLI(t, "write", tenant+"/ses", "access_key_id="+sesOld.ID, "secret_access_key="+sesOld.Secret,
		"iam_user=ses-sender", "region=eu-west-1", "account=aws", "base_url="+aws.URL())
	cleanupPath(t, tenant+"/ses")

	// Postmark: a server token; the next one is made in the console.
	pm := postmarkfake.New()
	t.Cleanup(pm.Close)
	pmOld := pm.AddServer("tenant-1 transactional")
	rememberSecret(pmOld.Secret)
	vaultCLI(t, "write", tenant+"/postmark", "server_token="+pmOld.Secret, "base_url="+pm.URL())
	cleanupPath(t, tenant+"/postmark")

	checkAPIKeyReads(t, tenant, sg.URL(), sesOld.ID, sesOld.Secret)

	list := vaultCLI(t, "list", tenant)
	for _, svc := range []string{"mailgun", "postmark", "sendgrid", "ses"} {
		if !strings.Contains(list, "\n"+svc+"\n") && !strings.HasSuffix(list, "\n"+svc) {
			t.Errorf("vault list %s lacks %s:\n%s", tenant, svc, list)
		}
	}

	// Rotations.
	v, sgNew := rotateCLI(t, tenant+"/sendgrid", "api_key", "reason=integration")
	oneCreate(t, "sendgrid", sg.Requests("create"), func(r providertest.Request) bool {
		return r.Method == "POST" && r.Header.Get("Authorization") == "Bearer "+sgOld
	})
	checkLive(t, "sendgrid during the overlap", sg.Live(), sgNew, sgOld)
	if v != 2 || sgNew == sgOld {
		t.Fatalf("sendgrid rotate: version %d, key changed %t", v, sgNew != sgOld)
	}
	old := cliData(t, "read", tenant+"/sendgrid", "version=1")
	if old["api_key"] != sgOld || old["status"] != "grace" || old["api_key_id"] != sgID {
		t.Fatalf("sendgrid version=1 during the overlap: status %v, key kept %t", old["status"], old["api_key"] == sgOld)
	}

	_, mgNew := rotateCLI(t, tenant+"/mailgun", "api_key")
	oneCreate(t, "mailgun", mg.Requests("create"), func(r providertest.Request) bool {
		user, pass, ok := basicAuth(r)
		return r.Method == "POST" && ok && user == "api" && pass == mgAdmin.Secret
	})
	checkLive(t, "mailgun during the overlap", mg.Live(), mgAdmin.Secret, mgOld.Secret, mgNew)
	if old := cliData(t, "read", tenant+"/mailgun", "version=1"); old["api_key"] != mgOld.Secret {
		t.Fatalf("mailgun version=1 is not the previous key")
	}

	_, sesNew := rotateCLI(t, tenant+"/ses", "secret_access_key")
	oneCreate(t, "ses", aws.Requests("create"), func(r providertest.Request) bool {
		return strings.Contains(r.Header.Get("Authorization"), "Credential="+awsAdmin.ID+"/")
	})
	checkLive(t, "ses during the overlap", aws.Live(), awsAdmin.Secret, sesOld.Secret, sesNew)
	if ids := aws.KeyIDs("ses-sender"); len(ids) != 2 {
		t.Fatalf("ses-sender has %d access keys, want the previous and the new", len(ids))
	}
	if old := cliData(t, "read", tenant+"/ses", "version=1"); old["secret_access_key"] != sesOld.Secret {
		t.Fatalf("ses version=1 is not the previous key")
	}
	// The SMTP password follows the new key.
	sesCur := cliData(t, "read", tenant+"/ses")
	wantPW, err := ses.SMTPPassword(sesNew, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	rememberSecret(wantPW)
	if sesCur["smtp_password"] != wantPW || sesCur["smtp_username"] == sesOld.ID || !slices.Contains(aws.KeyIDs("ses-sender"), fmt.Sprint(sesCur["smtp_username"])) {
		t.Fatalf("ses after rotate: smtp_password from the new key %t, smtp_username %v one of the user's keys",
			sesCur["smtp_password"] == wantPW, sesCur["smtp_username"])
	}

	pmNext := pm.AddToken("tenant-1 transactional")
	rememberSecret(pmNext.Secret)
	_, pmNew := rotateCLI(t, tenant+"/postmark", "server_token", "server_token="+pmNext.Secret)
	if pmNew != pmNext.Secret {
		t.Fatalf("postmark: the current token is not the one given to rotate")
	}
	tests := pm.Requests("test")
	if len(tests) == 0 || tests[len(tests)-1].Header.Get("X-Postmark-Server-Token") != pmNext.Secret {
		t.Fatalf("postmark: the new token was not tested before it was stored (%d test calls)", len(tests))
	}
	checkLive(t, "postmark during the overlap", pm.Live(), pmOld.Secret, pmNext.Secret)

	checkAPIKeyRefusals(t, tenant)
	checkAPIKeyConfig(t)

	// A delete during the overlap leaves the previous key valid at the
	// provider, and says so.
	out := vaultCLI(t, "delete", tenant+"/mailgun")
	if !strings.Contains(out, "WARNING") || !strings.Contains(out, "may still be valid") {
		t.Fatalf("delete during the overlap gave no warning:\n%s", out)
	}
}

// checkAPIKeyReads reads the new secrets as a table and as JSON.
func checkAPIKeyReads(t *testing.T, tenant, sgURL, sesID, sesSecret string) {
	t.Helper()
	table := vaultCLI(t, "read", tenant+"/sendgrid")
	for _, field := range []string{"api_key", "api_key_id", "scopes", "key_name", "base_url", "region", "service",
		"version", "next_rotation", "rotation_status", "pending_removals"} {
		if !strings.Contains(table, "\n"+field+" ") {
			t.Errorf("vault read sendgrid lacks %q:\n%s", field, table)
		}
	}
	sg := cliData(t, "read", tenant+"/sendgrid")
	if sg["base_url"] != sgURL || sg["region"] != "global" || num(sg["version"]) != 1 || sg["rotation_status"] != "healthy" {
		t.Errorf("sendgrid read: base_url %v region %v version %v status %v", sg["base_url"], sg["region"], sg["version"], sg["rotation_status"])
	}
	table = vaultCLI(t, "read", tenant+"/ses")
	for _, field := range []string{"access_key_id", "secret_access_key", "iam_user", "smtp_username", "smtp_password", "smtp_endpoint"} {
		if !strings.Contains(table, "\n"+field+" ") {
			t.Errorf("vault read ses lacks %q:\n%s", field, table)
		}
	}
	s := cliData(t, "read", tenant+"/ses")
	want, err := ses.SMTPPassword(sesSecret, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	rememberSecret(want)
	if s["smtp_username"] != sesID || s["smtp_password"] != want || s["smtp_endpoint"] != "email-smtp.eu-west-1.amazonaws.com" {
		t.Errorf("ses read: smtp_username %v, smtp_password derived correctly %t, smtp_endpoint %v",
			s["smtp_username"], s["smtp_password"] == want, s["smtp_endpoint"])
	}
	pm := cliData(t, "read", tenant+"/postmark")
	if pm["message_stream"] != "outbound" || pm["service"] != "postmark" {
		t.Errorf("postmark read: message_stream %v service %v", pm["message_stream"], pm["service"])
	}
}

// checkAPIKeyRefusals: a bad write is a 400 naming the field, which the CLI
// reports with exit code 2, and changes nothing.
func checkAPIKeyRefusals(t *testing.T, tenant string) {
	t.Helper()
	cases := []struct {
		args    []string
		mention string
	}{
		{[]string{tenant + "/sendgrid", "scopes=bad scope!"}, "scopes"},
		{[]string{tenant + "/ses", "region=mars-1"}, "region"},
		{[]string{tenant + "/mailgun", "role=root"}, "role"},
		{[]string{tenant + "/sendgrid", "base_url=http://example.com"}, "base_url"},
		{[]string{tenant + "/postmark", "account=mg-admin"}, "account"},
		{[]string{tenant + "/mailgun", "scopes=mail.send"}, "scopes"},
		{[]string{mount + "/api-keys/tenant-1/sparkpost", "api_key=x-0123456789"}, "service"},
		// Postmark mints no tokens by API: rotate needs the new one; the
		// others make their own and refuse one.
		{[]string{"-f", tenant + "/postmark/rotate"}, "server_token is required"},
		{[]string{tenant + "/sendgrid/rotate", "server_token=pm-0123456789"}, "server_token does not apply"},
	}
	for _, tc := range cases {
		out, err := runVault(append([]string{"write"}, tc.args...)...)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(out, "Code: 400") || !strings.Contains(out, tc.mention) {
			t.Errorf("vault write %s: %v, want exit code 2 and a 400 naming %q:\n%s", strings.Join(tc.args, " "), err, tc.mention, out)
		}
	}
	if s := cliData(t, "read", tenant+"/sendgrid"); num(s["current_version"]) != 2 || fmt.Sprint(s["scopes"]) != "[api_keys.create api_keys.delete api_keys.read mail.send]" {
		t.Errorf("refused writes changed sendgrid: version %v scopes %v", s["current_version"], s["scopes"])
	}
}

// checkAPIKeyConfig: config carries a policy class per provider.
func checkAPIKeyConfig(t *testing.T) {
	t.Helper()
	cfg := cliData(t, "read", mount+"/config")
	want := map[string]interface{}{
		"sendgrid_rotation_period": "2160h", "sendgrid_alert_threshold": "168h", "sendgrid_grace_period": "24h",
		"mailgun_grace_period": "24h", "ses_rotation_period": "2160h", "postmark_rotation_period": "2160h",
		"ses_risk_level": "medium",
	}
	for field, v := range want {
		if got := cfg[field]; got != v {
			t.Errorf("config %s = %v, want %v", field, cfg[field], v)
		}
	}
}

func basicAuth(r providertest.Request) (user, pass string, ok bool) {
	return (&http.Request{Header: r.Header}).BasicAuth()
}

// TestAPIKeys_OverlapEndsInVault: with a one-second overlap, Vault's own
// periodic work deletes the previous key at the provider, with no request.
func TestAPIKeys_OverlapEndsInVault(t *testing.T) {
	t.Parallel() // waits for Vault's periodic call
	path := mount + "/api-keys/tenant-overlap/sendgrid"
	sg, sgOld, sgID := newSendGrid(t)

	vaultCLI(t, "write", mount+"/config", "sendgrid_grace_period=1s")
	t.Cleanup(func() { _, _ = runVault("write", mount+"/config", "sendgrid_grace_period=24h") })
	if cfg := cliData(t, "read", mount+"/config"); cfg["sendgrid_grace_period"] != "1s" {
		t.Fatalf("config sendgrid_grace_period=1s reads back as %v", cfg["sendgrid_grace_period"])
	}
	writeSendGridKey(t, path, sg, sgOld, sgID)
	v, sgNew := rotateCLI(t, path, "api_key")
	rotated := time.Now()

	err := pollEvery(periodicLimit, 2*time.Second, func() error {
		if live := sg.Live(); len(live) != 1 || live[0] != sgNew {
			return fmt.Errorf("the provider accepts %d keys, new one among them %t", len(live), slices.Contains(live, sgNew))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the previous key was not deleted at the provider: %v", err)
	}
	t.Logf("Vault deleted the previous key at the provider %s after the rotation", time.Since(rotated).Round(time.Second))
	if dels := sg.Requests("delete"); len(dels) != 1 || dels[0].Path != "/v3/api_keys/"+sgID {
		t.Fatalf("%d delete requests at the provider, want one of the previous key's id", len(dels))
	}

	s := cliData(t, "read", path)
	if pr, _ := s["pending_removals"].([]interface{}); len(pr) != 0 || num(s["current_version"]) != v {
		t.Fatalf("after the removal: pending_removals %v, current_version %v", s["pending_removals"], s["current_version"])
	}
	row := historyRow(t, path, func(r map[string]interface{}) bool { return r["operation"] == "remove" })
	if row["result"] != "success" || jsonInt(row["from_version"]) != 1 || row["trigger"] != "time" {
		t.Fatalf("remove row %v, want a successful time-triggered removal of version 1", row)
	}
	if old := cliData(t, "read", path, "version=1"); old["api_key"] != nil || old["status"] != "expired" {
		t.Fatalf("version 1 after its overlap: status %v, key still readable %t", old["status"], old["api_key"] != nil)
	}
}

// TestAPIKeys_RevokePreviousDeletesAtOnce: an incident rotation deletes the
// previous key at the provider before the CLI returns.
func TestAPIKeys_RevokePreviousDeletesAtOnce(t *testing.T) {
	path := mount + "/api-keys/tenant-incident/sendgrid"
	sg, sgOld, sgID := newSendGrid(t)
	writeSendGridKey(t, path, sg, sgOld, sgID)

	rot := cliData(t, "write", path+"/rotate", "revoke_previous=true", "incident_id=INC-1")
	live := sg.Live() // right after the CLI returned
	s := cliData(t, "read", path)
	cur, _ := s["api_key"].(string)
	rememberSecret(cur)
	checkLive(t, "sendgrid after revoke_previous", live, cur)
	if fmt.Sprint(rot["revoked_versions"]) != "[1]" || num(s["current_version"]) != 2 {
		t.Fatalf("rotate answered revoked_versions %v, current_version %v; want [1] and 2", rot["revoked_versions"], s["current_version"])
	}
	if dels := sg.Requests("delete"); len(dels) != 1 || dels[0].Path != "/v3/api_keys/"+sgID {
		t.Fatalf("%d delete requests at the provider, want one of the previous key's id", len(dels))
	}
	if pr, _ := s["pending_removals"].([]interface{}); len(pr) != 0 {
		t.Fatalf("pending_removals %v after an immediate removal", pr)
	}
	revoke := historyRow(t, path, func(r map[string]interface{}) bool { return r["operation"] == "revoke" })
	if revoke["incident_id"] != "INC-1" {
		t.Fatalf("revoke row %v, want incident_id INC-1", revoke)
	}
	if old := cliData(t, "read", path, "version=1"); old["status"] != "revoked" || old["api_key"] != nil {
		t.Fatalf("version 1 after the incident rotation: status %v, key readable %t", old["status"], old["api_key"] != nil)
	}
}

// TestSMTP_MailuDriverThroughVault: with driver=mailu a rotation inside
// Vault sets the new password through Mailu's admin API and logs in to the
// SMTP server with it (STARTTLS, trusting ca_cert) before it is current.
func TestSMTP_MailuDriverThroughVault(t *testing.T) {
	const path = mount + "/smtp/tenant-1/mail-mailu"
	mu := mailufake.New()
	t.Cleanup(mu.Close)
	srv, err := smtpfake.New(smtpfake.STARTTLS, mu.Check)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	rememberSecret(mu.Token())
	rememberSecret("old-Mailu-password-1")
	mu.AddUser("admin@example.com", "old-Mailu-password-1")

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, srv.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	vaultCLI(t, "write", mount+"/config/providers/mailu-1", "provider=mailu", "api_token="+mu.Token(), "base_url="+mu.URL())
	cleanupPath(t, mount+"/config/providers/mailu-1")
	host, port := srv.Addr()
	vaultCLI(t, "write", path, "username=admin@example.com", "password=old-Mailu-password-1",
		"host="+host, fmt.Sprintf("port=%d", port), "encryption=starttls",
		"driver=mailu", "api_url="+mu.URL(), "account=mailu-1", "ca_cert=@"+caFile)
	cleanupPath(t, path)

	s := cliData(t, "read", path)
	// The engine stores the PEM trimmed of its final newline.
	pem := strings.TrimSpace(string(srv.CAPEM()))
	if s["driver"] != "mailu" || s["ca_cert"] != pem || s["api_url"] != mu.URL() {
		t.Fatalf("read: driver %v api_url %v ca_cert is the file's PEM %t", s["driver"], s["api_url"], s["ca_cert"] == pem)
	}

	v, pw := rotateCLI(t, path, "password")
	if v != 2 || pw == "old-Mailu-password-1" {
		t.Fatalf("rotate: version %d, password changed %t", v, pw != "old-Mailu-password-1")
	}
	if mu.Password("admin@example.com") != pw {
		t.Fatal("Mailu's password is not the one Vault holds")
	}
	if set := mu.Requests("set"); len(set) != 1 || set[0].Header.Get("Authorization") != "Bearer "+mu.Token() {
		t.Fatalf("%d password changes at Mailu, want one with the account's token", len(set))
	}
	if logins := srv.Logins(); len(logins) != 1 || logins[0] != "admin@example.com" {
		t.Fatalf("SMTP logins %v, want Vault's one verification login as admin@example.com", logins)
	}
	// What an application does next: log in with the password it read.
	err = smtplogin.Login(t.Context(), smtplogin.Options{Host: host, Port: port, Encryption: "starttls",
		Username: "admin@example.com", Password: pw, RootCAs: srv.CAPool()})
	if err != nil {
		t.Fatalf("login with the password read from Vault: %v", err)
	}
}

// TestAPIKeys_FailedRemovalIsRetried: when the provider refuses the delete
// at the end of the overlap, Vault keeps the removal queued, shows it as
// failing, and deletes the key on a later periodic call.
func TestAPIKeys_FailedRemovalIsRetried(t *testing.T) {
	t.Parallel() // waits for two periodic calls
	const tenant = "tenant-retry"
	path := mount + "/api-keys/" + tenant + "/mailgun"
	mg := mailgunfake.New()
	t.Cleanup(mg.Close)
	admin := mg.AddKey("admin", "vault admin", "")
	old := mg.AddKey("sending", "retry mail", "mg.example.com")
	rememberSecret(admin.Secret)
	rememberSecret(old.Secret)
	vaultCLI(t, "write", mount+"/config/providers/mg-retry", "provider=mailgun", "api_key="+admin.Secret, "base_url="+mg.URL())
	cleanupPath(t, mount+"/config/providers/mg-retry")
	// Mailgun's own overlap setting, so that the SendGrid tests' settings
	// never meet this one.
	vaultCLI(t, "write", mount+"/config", "mailgun_grace_period=1s")
	t.Cleanup(func() { _, _ = runVault("write", mount+"/config", "mailgun_grace_period=24h") })
	vaultCLI(t, "write", path, "api_key="+old.Secret, "key_id="+old.ID, "role=sending",
		"domain=mg.example.com", "account=mg-retry", "base_url="+mg.URL())
	cleanupPath(t, path)

	mg.Fail("delete", 503, 1)
	_, cur := rotateCLI(t, path, "api_key")
	rotated := time.Now()

	err := pollEvery(periodicLimit, 2*time.Second, func() error {
		s, err := readRaw(client.Logical(), path, nil)
		if err != nil {
			return err
		}
		pr, _ := s.Data["pending_removals"].([]interface{})
		if len(pr) != 1 {
			return fmt.Errorf("%d pending removals", len(pr))
		}
		r := pr[0].(map[string]interface{})
		if jsonInt(r["attempts"]) < 1 {
			return fmt.Errorf("removal not tried yet: %v", r)
		}
		if lastErr, _ := r["last_error"].(string); !strings.Contains(lastErr, "503") || strings.Contains(lastErr, admin.Secret) {
			return stopPolling(fmt.Errorf("last_error %q, want the provider's 503 and no key", lastErr))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the refused removal is not shown: %v", err)
	}
	t.Logf("the first removal attempt failed %s after the rotation", time.Since(rotated).Round(time.Second))
	if len(mg.Requests("delete")) != 1 {
		t.Fatalf("%d delete requests, want the one refused", len(mg.Requests("delete")))
	}
	checkLive(t, "mailgun after the refused delete", mg.Live(), admin.Secret, old.Secret, cur)
	failing := cliData(t, "read", mount+"/rotation/status", "type=api-keys", "tenant="+tenant, "status=failing")
	if rows, _ := failing["secrets"].([]interface{}); len(rows) != 1 || num(rows[0].(map[string]interface{})["pending_removals"]) != 1 {
		t.Fatalf("rotation/status status=failing: %v, want the secret with its pending removal", failing["secrets"])
	}

	// The retry waits out a minute's backoff, then the next periodic call.
	err = pollEvery(time.Minute+periodicLimit, 5*time.Second, func() error {
		if live := mg.Live(); !slices.Equal(live, sorted(admin.Secret, cur)) {
			return fmt.Errorf("the provider accepts %d keys", len(live))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the removal was not retried: %v", err)
	}
	t.Logf("the retry deleted the key %s after the rotation", time.Since(rotated).Round(time.Second))
	row := historyRow(t, path, func(r map[string]interface{}) bool { return r["operation"] == "remove" && r["result"] == "success" })
	if jsonInt(row["from_version"]) != 1 {
		t.Fatalf("remove row %v, want version 1", row)
	}
	historyRow(t, path, func(r map[string]interface{}) bool { return r["operation"] == "remove" && r["result"] == "failed" })
	if rows, _ := cliData(t, "read", mount+"/rotation/status", "type=api-keys", "tenant="+tenant, "status=failing")["secrets"].([]interface{}); len(rows) != 0 {
		t.Fatalf("still failing after the removal: %v", rows)
	}
}
