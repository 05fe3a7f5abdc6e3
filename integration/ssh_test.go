package integration

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"
	"golang.org/x/crypto/ssh"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/sshcheck"
)

// keygenFP is the SHA256 fingerprint `ssh-keygen -lf` prints for a public key.
func keygenFP(t *testing.T, authorizedLine string) string {
	t.Helper()
	_, fp, err := sshcheck.Fingerprint(t.TempDir(), authorizedLine)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// rememberKey marks a PEM or OpenSSH private key as secret in every shape a
// log could show it: the whole text, each body line (a log escapes the line
// breaks, so the whole text would not match) and the body in one piece. It
// returns those values.
func rememberKey(privatePEM string) []string {
	values := []string{privatePEM}
	var body strings.Builder
	for _, line := range strings.Split(privatePEM, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "-----") || strings.Contains(line, ":") { // armour and PEM headers
			continue
		}
		values = append(values, line)
		body.WriteString(line)
	}
	values = append(values, body.String())
	for _, v := range values {
		rememberSecret(v)
	}
	return values
}

// checkPublicOf derives the public key of a downloaded private key with
// `ssh-keygen -y` and checks it is want.
func checkPublicOf(t *testing.T, privatePEM, passphrase, want string) {
	t.Helper()
	rememberKey(privatePEM)
	got, err := sshcheck.PublicOf(t.TempDir(), privatePEM, passphrase)
	if err != nil {
		t.Fatal(err)
	}
	w, _, _, _, err := ssh.ParseAuthorizedKey([]byte(want))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), w.Marshal()) {
		t.Fatalf("ssh-keygen -y derives %s from the downloaded key, want %s", ssh.FingerprintSHA256(got), ssh.FingerprintSHA256(w))
	}
}

// newKeyPair makes a key pair with ssh-keygen and returns the private file's
// text and the public line.
func newKeyPair(t *testing.T, passphrase string, args ...string) (string, string) {
	t.Helper()
	priv, pub, err := sshcheck.NewPair(t.TempDir(), passphrase, "", args...)
	if err != nil {
		t.Fatal(err)
	}
	rememberKey(priv)
	return priv, pub
}

// TestSSH_UserFlowThroughCLI runs the commands of the SSH issue as a user
// types them: generate, read, download (counted), rotate, authorized_keys,
// revoke, rotate again.
func TestSSH_UserFlowThroughCLI(t *testing.T) {
	const path = mount + "/ssh/tenant-1/admin"
	vaultCLI(t, "write", path, "key_type=ed25519")
	t.Cleanup(func() { _, _ = runVault("delete", path) })

	table := vaultCLI(t, "read", path)
	for _, field := range []string{"public_key", "fingerprint", "key_type", "key_bits", "versions", "last_downloaded",
		"download_count", "last_rotated", "next_rotation", "rotation_status"} {
		if !strings.Contains(table, "\n"+field+" ") {
			t.Errorf("vault read output lacks %q:\n%s", field, table)
		}
	}
	// One duration format in the CLI's table: the period and the threshold
	// read alike.
	for _, line := range []string{"rotation_period", "alert_threshold"} {
		want := map[string]string{"rotation_period": "2160h", "alert_threshold": "336h"}[line]
		if !regexp.MustCompile(`\n` + line + ` +` + want + `\n`).MatchString(table) {
			t.Errorf("vault read shows %s not as %s:\n%s", line, want, table)
		}
	}
	if strings.Contains(table, "PRIVATE KEY") {
		t.Fatal("vault read shows the private key")
	}
	v1 := cliData(t, "read", path)
	pub1 := v1["public_key"].(string)
	if v1["key_type"] != "ed25519" || num(v1["key_bits"]) != 256 || v1["fingerprint"] != keygenFP(t, pub1) ||
		v1["rotation_period"] != "2160h" || v1["alert_threshold"] != "336h" {
		t.Fatalf("first read: %v", v1)
	}

	checkPublicOf(t, vaultCLI(t, "write", "-f", "-field=private_key", path+"/private"), "", pub1)
	rememberSecret("cli-Passphrase-1")
	checkPublicOf(t, vaultCLI(t, "write", "-field=private_key", path+"/private", "passphrase=cli-Passphrase-1"), "cli-Passphrase-1", pub1)
	counted := cliData(t, "read", path)
	if num(counted["download_count"]) != 2 || counted["last_downloaded"] == "" ||
		counted["last_downloaded_by"].(map[string]interface{})["display_name"] != "token" {
		t.Fatalf("after two downloads: count %v, last %v by %v", counted["download_count"], counted["last_downloaded"], counted["last_downloaded_by"])
	}
	// Downloads are access records, kept apart from the rotation history.
	logs := cliData(t, "read", path+"/history")
	access, _ := logs["access"].([]interface{})
	hist, _ := logs["history"].([]interface{})
	if len(access) != 2 || access[0].(map[string]interface{})["operation"] != "download" || len(hist) != 0 {
		t.Fatalf("after two downloads: access %v, history %v; want 2 downloads and no history row", access, hist)
	}

	if rot := cliData(t, "write", path+"/rotate", "reason=quarterly"); num(rot["version"]) != 2 {
		t.Fatalf("rotate answered %v", rot)
	}
	pub2 := cliData(t, "read", path)["public_key"].(string)
	ak := vaultCLI(t, "read", "-field=authorized_keys", path+"/authorized_keys")
	if ak != pub2+"\n"+pub1+"\n" {
		t.Fatalf("authorized_keys during grace:\n%s", ak)
	}

	rev := cliData(t, "write", path+"/revoke", "reason=laptop lost", "incident_id=INC-2026-009")
	if fmt.Sprint(rev["revoked_versions"]) != "[1 2]" || rev["status"] != "revoked" {
		t.Fatalf("revoke answered %v", rev)
	}
	if keys := cliData(t, "read", path+"/authorized_keys"); keys["authorized_keys"] != "" || len(keys["keys"].([]interface{})) != 0 {
		t.Fatalf("authorized_keys after revoke: %v", keys)
	}
	if out := vaultCLIFails(t, "write", "-f", path+"/private"); !strings.Contains(out, "Code: 409") || !strings.Contains(out, "revoked") {
		t.Fatalf("download after revoke:\n%s", out)
	}
	first := cliData(t, "read", path+"/history")["history"].([]interface{})[0].(map[string]interface{})
	if first["operation"] != "revoke" || first["trigger"] != "event" || first["incident_id"] != "INC-2026-009" {
		t.Fatalf("revoke history entry %v", first)
	}

	vaultCLI(t, "write", path+"/rotate", "reason=after incident")
	pub3 := cliData(t, "read", path)["public_key"].(string)
	if ak := vaultCLI(t, "read", "-field=authorized_keys", path+"/authorized_keys"); ak != pub3+"\n" {
		t.Fatalf("authorized_keys after rotating a revoked key:\n%s", ak)
	}

	help := vaultCLI(t, "path-help", path)
	for _, field := range []string{"key_type", "private_key", "passphrase", "public_key", "one_time_download"} {
		if !strings.Contains(help, field) {
			t.Errorf("path-help lacks %q", field)
		}
	}
}

// TestSSH_GoClient generates every key type, imports an encrypted PEM key with
// one-time download, and revokes, through the Go vault/api client.
func TestSSH_GoClient(t *testing.T) {
	l := client.Logical()
	for _, kt := range []struct {
		name string
		bits int
	}{{"ed25519", 256}, {"rsa-4096", 4096}, {"rsa-3072", 3072}, {"ecdsa-p256", 256}, {"ecdsa-p384", 384}, {"ecdsa-p521", 521}} {
		path := mount + "/ssh/tenant-go/" + kt.name
		if _, err := l.Write(path, map[string]interface{}{"key_type": kt.name}); err != nil {
			t.Fatalf("%s: %v", kt.name, err)
		}
		t.Cleanup(func() { _, _ = l.Delete(path) })
		s, err := l.Read(path)
		if err != nil {
			t.Fatal(err)
		}
		pub := s.Data["public_key"].(string)
		if s.Data["key_type"] != kt.name || fmt.Sprint(s.Data["key_bits"]) != fmt.Sprint(kt.bits) || s.Data["fingerprint"] != keygenFP(t, pub) {
			t.Fatalf("%s: read %v %v %v", kt.name, s.Data["key_type"], s.Data["key_bits"], s.Data["fingerprint"])
		}
		rememberSecret("go-Passphrase-1")
		dl, err := l.Write(path+"/private", map[string]interface{}{"passphrase": "go-Passphrase-1"})
		if err != nil {
			t.Fatal(err)
		}
		checkPublicOf(t, dl.Data["private_key"].(string), "go-Passphrase-1", pub)
	}

	const path = mount + "/ssh/tenant-go/deploy"
	priv, pub := newKeyPair(t, "imp0rt-Passphrase", "-t", "rsa", "-b", "3072", "-m", "PEM")
	rememberSecret("imp0rt-Passphrase")
	_, err := l.Write(path, map[string]interface{}{"private_key": priv, "passphrase": "imp0rt-Passphrase", "public_key": pub, "one_time_download": true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })
	s, err := l.Read(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Data["key_type"] != "rsa-3072" || s.Data["imported"] != true || s.Data["fingerprint"] != keygenFP(t, pub) {
		t.Fatalf("imported key: %v %v %v", s.Data["key_type"], s.Data["imported"], s.Data["fingerprint"])
	}
	dl, err := l.Write(path+"/private", nil)
	if err != nil {
		t.Fatal(err)
	}
	checkPublicOf(t, dl.Data["private_key"].(string), "", pub)
	if _, err := l.Write(path+"/private", nil); statusCode(err) != 409 || !strings.Contains(err.Error(), "one_time_download") {
		t.Fatalf("second one-time download: %v, want 409", err)
	}
	if _, err := l.Write(path+"/rotate", map[string]interface{}{"reason": "new download"}); err != nil {
		t.Fatal(err)
	}
	dl, err = l.Write(path+"/private", nil)
	if err != nil || fmt.Sprint(dl.Data["version"]) != "2" || dl.Data["key_type"] != "rsa-3072" {
		t.Fatalf("download after rotation: %v %v", dl, err)
	}
	rememberKey(dl.Data["private_key"].(string))
	if _, err := l.Write(path+"/private", nil); statusCode(err) != 409 {
		t.Fatalf("second download of version 2: %v, want 409", err)
	}

	if _, err := l.Write(path+"/revoke", map[string]interface{}{"reason": "leak", "incident_id": "INC-2026-010"}); err != nil {
		t.Fatal(err)
	}
	ak, err := l.Read(path + "/authorized_keys")
	if err != nil || ak.Data["authorized_keys"] != "" || ak.Data["status"] != "revoked" {
		t.Fatalf("authorized_keys after revoke: %v %v", ak, err)
	}
	if _, err := l.Write(mount+"/ssh/tenant-go/absent/revoke", map[string]interface{}{"reason": "x"}); statusCode(err) != 404 {
		t.Fatalf("revoke of a missing key: %v, want 404", err)
	}
}

// TestSSH_BadImportsAre400AndStoreNothing sends the refusals of the SSH issue
// through the real server, with both clients.
func TestSSH_BadImportsAre400AndStoreNothing(t *testing.T) {
	encrypted, _ := newKeyPair(t, "right-Passphrase", "-t", "ed25519")
	_, otherPub := newKeyPair(t, "", "-t", "ed25519")
	rsa2048, _ := newKeyPair(t, "", "-t", "rsa", "-b", "2048")
	cases := []struct {
		name    string
		in      map[string]interface{}
		mention string
	}{
		{"wrong passphrase", map[string]interface{}{"private_key": encrypted, "passphrase": "wrong-Passphrase"}, "passphrase is wrong"},
		{"garbage", map[string]interface{}{"private_key": "not a key"}, "private_key does not parse"},
		{"mismatching public_key", map[string]interface{}{"private_key": encrypted, "passphrase": "right-Passphrase", "public_key": otherPub}, "public_key does not match"},
		{"rsa-2048 import", map[string]interface{}{"private_key": rsa2048}, "2048-bit RSA"},
		{"rsa-2048 generate", map[string]interface{}{"key_type": "rsa-2048"}, "at least 3072 bits"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client.Logical().Write(mount+"/ssh/tenant-bad/k1", tc.in)
			if statusCode(err) != 400 || !strings.Contains(err.Error(), tc.mention) {
				t.Fatalf("got %v, want a 400 saying %q", err, tc.mention)
			}
		})
	}
	out := vaultCLIFails(t, "write", mount+"/ssh/tenant-bad/k1", "key_type=rsa-2048")
	if !strings.Contains(out, "Code: 400") || !strings.Contains(out, "key_type") {
		t.Fatalf("CLI key_type=rsa-2048:\n%s", out)
	}
	out = vaultCLIFails(t, "write", mount+"/ssh/tenant-bad/k1", "private_key="+encrypted, "passphrase=wrong-Passphrase")
	if !strings.Contains(out, "Code: 400") || !strings.Contains(out, "passphrase is wrong") {
		t.Fatalf("CLI wrong passphrase:\n%s", out)
	}
	if s, err := client.Logical().List(mount + "/ssh/tenant-bad"); err != nil || s != nil {
		t.Fatalf("refused imports stored something: %v %v", s, err)
	}
}

// TestSSH_IncidentRotationAndExportCapability: revoke_previous takes every
// old key out of authorized_keys at once; export is an update on .../private
// (a GET is 405); a passphrase in the query string of the POST never reaches
// the engine (the key comes back unencrypted).
func TestSSH_IncidentRotationAndExportCapability(t *testing.T) {
	l := client.Logical()
	const path = mount + "/ssh/tenant-inc/admin"
	if _, err := l.Write(path, map[string]interface{}{"key_type": "ed25519"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })
	if _, err := l.Write(path+"/rotate", nil); err != nil { // version 1 in grace
		t.Fatal(err)
	}
	rot, err := l.Write(path+"/rotate", map[string]interface{}{"revoke_previous": true, "incident_id": "INC-2026-077", "reason": "key leaked"})
	if err != nil || fmt.Sprint(rot.Data["revoked_versions"]) != "[1 2]" {
		t.Fatalf("incident rotation: %v %v", rot, err)
	}
	ak, err := l.Read(path + "/authorized_keys")
	if err != nil || len(ak.Data["keys"].([]interface{})) != 1 || strings.Count(ak.Data["authorized_keys"].(string), "\n") != 1 {
		t.Fatalf("authorized_keys after the incident rotation: %v %v", ak, err)
	}
	hist, err := l.Read(path + "/history")
	if err != nil {
		t.Fatal(err)
	}
	if h := hist.Data["history"].([]interface{})[0].(map[string]interface{}); h["operation"] != "revoke" || h["trigger"] != "event" || h["incident_id"] != "INC-2026-077" {
		t.Fatalf("history after the incident rotation: %v", h)
	}

	if _, err := readRaw(l, path+"/private", nil); statusCode(err) != 405 {
		t.Fatalf("GET .../private: %v, want 405", err)
	}
	out := vaultCLIFails(t, "read", path+"/private")
	if !strings.Contains(out, "Code: 405") {
		t.Fatalf("vault read .../private:\n%s", out)
	}

	// Not remembered as a secret that must stay out of the logs: Vault's
	// audit device records the request URI, query string included, before
	// any plugin runs, so a passphrase put in a URL is in the audit log
	// whatever the engine does. The engine's part is never to use it.
	req := client.NewRequest("POST", "/v1/"+path+"/private")
	req.Params.Set("passphrase", "query-Passphrase-9")
	resp, err := client.RawRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	dl, err := api.ParseSecret(resp.Body)
	if err != nil || dl == nil {
		t.Fatalf("POST with a query passphrase: %v %v", dl, err)
	}
	if dl.Data["encrypted"] != false || !strings.Contains(dl.Data["private_key"].(string), "OPENSSH PRIVATE KEY") {
		t.Fatalf("the query passphrase reached the engine: encrypted %v", dl.Data["encrypted"])
	}
	rememberKey(dl.Data["private_key"].(string))
	if _, err := l.Write(mount+"/ssh/tenant-inc/absent/private", nil); statusCode(err) != 404 || !strings.Contains(err.Error(), "ssh/tenant-inc/absent") {
		t.Fatalf("download of a missing key: %v, want a 404 naming it", err)
	}
}

// TestBounds_DurationsAndTextAre400 sends values beyond the documented
// bounds through the real server.
func TestBounds_DurationsAndTextAre400(t *testing.T) {
	l := client.Logical()
	cases := []struct {
		path  string
		in    map[string]interface{}
		field string
	}{
		{mount + "/config", map[string]interface{}{"ssh_grace_period": "2540400h"}, "ssh_grace_period"},
		{mount + "/config", map[string]interface{}{"dkim_rotation_period": "3651d"}, "dkim_rotation_period"},
		{mount + "/ssh/tenant-bounds/k1", map[string]interface{}{"rotation_period": "3651d"}, "rotation_period"},
		{mount + "/smtp/tenant-bounds/m1", map[string]interface{}{"username": "a@example.com", "host": "smtp.example.com",
			"webmail_url": "https://mail.example.com/" + strings.Repeat("a", 2048)}, "webmail_url"},
	}
	for _, tc := range cases {
		_, err := l.Write(tc.path, tc.in)
		if statusCode(err) != 400 || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s %s: %v, want a 400 naming the field", tc.path, tc.field, err)
		}
	}
	for _, kind := range []string{"ssh", "smtp"} {
		if s, err := l.List(mount + "/" + kind + "/tenant-bounds"); err != nil || s != nil {
			t.Fatalf("refused writes stored %s secrets: %v %v", kind, s, err)
		}
	}
}
