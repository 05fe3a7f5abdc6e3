package integration

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
	"golang.org/x/crypto/ssh"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/sshcheck"
)

// migrateRun is one run of the penguinmails-migrate binary.
type migrateRun struct {
	stdout, stderr string
	code           int
}

func buildMigrate(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "penguinmails-migrate")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/penguinmails-migrate").CombinedOutput(); err != nil {
		t.Fatalf("building penguinmails-migrate: %v\n%s", err, out)
	}
	return bin
}

func runMigrate(t *testing.T, bin string, args ...string) migrateRun {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = vaultEnv()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := migrateRun{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		t.Fatal(err)
	}
	return r
}

// ensureKVv2 makes sure secret/ is a KV v2 mount: dev mode mounts one there,
// a server started otherwise may not have it.
func ensureKVv2(t *testing.T) {
	t.Helper()
	mounts, err := client.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if m, ok := mounts["secret/"]; ok {
		if m.Type != "kv" || m.Options["version"] != "2" {
			t.Fatalf("secret/ is %s version %q, want kv version 2", m.Type, m.Options["version"])
		}
		return
	}
	vaultCLI(t, "secrets", "enable", "-path=secret", "-version=2", "kv")
}

// migrationSources writes one source of each type to KV v2 (an SMTP login
// with three versions, the second deleted), and two bad ones. It returns
// the DKIM and SSH keys and the secret values to look for in the output.
type migrationSources struct {
	dkim      *rsa.PrivateKey // the current version's key
	sshPEM    string
	passwords []string // SMTP versions 1..3
	values    []string // every secret value written
}

func writeMigrationSources(t *testing.T, kv *api.KVv2) migrationSources {
	t.Helper()
	ctx := context.Background()
	put := func(path string, data map[string]interface{}) {
		t.Helper()
		if _, err := kv.Put(ctx, path, data); err != nil {
			t.Fatalf("kv put %s: %v", path, err)
		}
	}
	var src migrationSources
	src.passwords = []string{"mig-pw-v1-3f9a2c71", "mig-pw-v2-8b1e04d2", "mig-pw-v3-c55d7e90"}
	for _, pw := range src.passwords {
		put("penguinmails/smtp/mig-t1/mail-1", map[string]interface{}{"username": "admin@mig.example", "password": pw,
			"host": "smtp.mig.example", "port": 587, "encryption": "starttls", "rotation_policy": "180_days"})
	}
	if err := kv.DeleteVersions(ctx, "penguinmails/smtp/mig-t1/mail-1", []int{2}); err != nil {
		t.Fatal(err)
	}
	put("penguinmails/api-key/mig-t1/postmark", map[string]interface{}{"serverToken": "mig-pm-token-5e0c19aa", "messageStream": "outbound"})
	put("penguinmails/api-keys/mig-t1/ses", map[string]interface{}{"accessKeyId": "AKIAMIGRATE00000TEST",
		"secretAccessKey": "migSecretAccessKey0123456789abcdefghijKL", "region": "eu-west-1", "iam_user": "ses-sender"})

	// Two DKIM versions: the key of selector pm, then its successor at pm2.
	var dkimPEMs []string
	for _, selector := range []string{"pm", "pm2"} {
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		src.dkim = key
		dkimPEMs = append(dkimPEMs, string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})))
		put("penguinmails/dkim/mig-t1/mig-example.com", map[string]interface{}{"private_key": dkimPEMs[len(dkimPEMs)-1], "selector": selector})
	}

	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKey(edKey, "")
	if err != nil {
		t.Fatal(err)
	}
	src.sshPEM = string(pem.EncodeToMemory(block))
	put("penguinmails/ssh/mig-t1/admin", map[string]interface{}{"private_key": src.sshPEM})

	// Bad entries: a login without its password, a DKIM key that is not one.
	put("penguinmails/smtp/mig-t1/no-password", map[string]interface{}{"username": "u@mig.example", "host": "smtp.mig.example"})
	put("penguinmails/dkim/mig-t1/bad.mig-example.com", map[string]interface{}{"private_key": "mig-not-a-key-77d1e3", "selector": "pm"})

	src.values = append([]string{"mig-pm-token-5e0c19aa", "migSecretAccessKey0123456789abcdefghijKL", "mig-not-a-key-77d1e3"}, src.passwords...)
	for _, key := range append(dkimPEMs, src.sshPEM) {
		for _, line := range strings.Split(key, "\n") {
			if line != "" && !strings.HasPrefix(line, "-----") {
				src.values = append(src.values, line)
			}
		}
	}
	for _, v := range src.values {
		rememberSecret(v) // the harness also checks Vault's log and audit log
	}
	return src
}

// TestMigrate_FromKVv2 runs penguinmails-migrate against the real Vault: a
// dry run writes nothing, -apply -all-versions copies and verifies every
// good source and reports the bad ones, and a second run changes nothing.
func TestMigrate_FromKVv2(t *testing.T) {
	ensureKVv2(t)
	kv := client.KVv2("secret")
	src := writeMigrationSources(t, kv)
	dests := []string{"smtp/mig-t1/mail-1", "api-keys/mig-t1/postmark", "api-keys/mig-t1/ses", "dkim/mig-t1/mig-example.com", "ssh/mig-t1/admin"}
	t.Cleanup(func() {
		_ = kv.DeleteMetadata(context.Background(), "penguinmails")
		for _, p := range []string{"smtp/mig-t1/mail-1", "smtp/mig-t1/no-password", "api-key/mig-t1/postmark", "api-keys/mig-t1/ses",
			"dkim/mig-t1/mig-example.com", "dkim/mig-t1/bad.mig-example.com", "ssh/mig-t1/admin"} {
			_ = kv.DeleteMetadata(context.Background(), "penguinmails/"+p)
		}
		for _, d := range dests {
			_, _ = client.Logical().Delete(mount + "/" + d)
		}
	})
	bin := buildMigrate(t)
	var runs []migrateRun

	if wrong := runMigrate(t, bin, "-mount", "no-such-engine"); wrong.code != 2 || !strings.Contains(wrong.stderr, "no penguinmails engine at no-such-engine/") {
		t.Fatalf("-mount without an engine: exit %d\n%s%s", wrong.code, wrong.stdout, wrong.stderr)
	}

	dry := runMigrate(t, bin, "-all-versions")
	runs = append(runs, dry)
	if dry.code != 1 || !strings.Contains(dry.stdout, "summary: created 5, updated 0, unchanged 0, skipped 0, failed 2 (dry run") {
		t.Fatalf("dry run: exit %d\n%s%s", dry.code, dry.stdout, dry.stderr)
	}
	for _, d := range dests {
		if s, err := client.Logical().Read(mount + "/" + d); err != nil || s != nil {
			t.Fatalf("the dry run wrote %s (err %v)", d, err)
		}
	}
	wantLine(t, dry.stdout, "create", "secret/penguinmails/smtp/mig-t1/mail-1 -> penguinmails/smtp/mig-t1/mail-1", "version 2 deleted, not copied")
	wantLine(t, dry.stdout, "create", "secret/penguinmails/api-key/mig-t1/postmark -> penguinmails/api-keys/mig-t1/postmark", "")
	wantLine(t, dry.stdout, "fail", "secret/penguinmails/smtp/mig-t1/no-password", "missing field password")
	wantLine(t, dry.stdout, "fail", "secret/penguinmails/dkim/mig-t1/bad.mig-example.com", "private_key")

	applied := runMigrate(t, bin, "-apply", "-all-versions")
	runs = append(runs, applied)
	if applied.code != 1 || !strings.Contains(applied.stdout, "summary: created 5, updated 0, unchanged 0, skipped 0, failed 2 (applied)") ||
		strings.Count(applied.stdout, " verified") != 5 {
		t.Fatalf("apply: exit %d\n%s%s", applied.code, applied.stdout, applied.stderr)
	}
	checkMigratedSMTP(t, src.passwords)
	checkMigratedAPIKeys(t)
	checkMigratedDKIM(t, src.dkim)
	checkMigratedSSH(t, src.sshPEM)
	versionsBefore := currentVersions(t, dests)

	// Without the bad entries, a second run finds everything unchanged.
	for _, p := range []string{"smtp/mig-t1/no-password", "dkim/mig-t1/bad.mig-example.com"} {
		if err := kv.DeleteMetadata(context.Background(), "penguinmails/"+p); err != nil {
			t.Fatal(err)
		}
	}
	again := runMigrate(t, bin, "-apply", "-all-versions")
	runs = append(runs, again)
	if again.code != 0 || !strings.Contains(again.stdout, "summary: created 0, updated 0, unchanged 5, skipped 0, failed 0 (applied)") {
		t.Fatalf("second apply: exit %d\n%s%s", again.code, again.stdout, again.stderr)
	}
	if after := currentVersions(t, dests); !equalMaps(versionsBefore, after) {
		t.Fatalf("the second run changed versions: %v -> %v", versionsBefore, after)
	}
	runs = append(runs, checkStaleKVIsNotCopied(t, bin, kv, &src))

	for i, r := range runs {
		if r.stderr != "" {
			t.Errorf("run %d printed on stderr (not a terminal: no progress expected): %q", i, r.stderr)
		}
		for _, v := range src.values {
			if strings.Contains(r.stdout+r.stderr, v) {
				t.Errorf("run %d printed a secret value (%d bytes)", i, len(v))
			}
		}
	}
}

// checkStaleKVIsNotCopied: a key rotated in the engine after the copy is
// newer than KV's, so a run leaves it (skip), while a KV version made after
// the engine's is copied (update). The engine's times have whole seconds:
// the new KV version is written once the clock has passed the engine's.
func checkStaleKVIsNotCopied(t *testing.T, bin string, kv *api.KVv2, src *migrationSources) migrateRun {
	t.Helper()
	sshPath := mount + "/ssh/mig-t1/admin"
	vaultCLI(t, "write", sshPath+"/rotate", "reason=migration test: the engine rotates after the copy")
	rotated := readData(t, sshPath, nil)
	smtpMade := newestVersionTime(t, readData(t, mount+"/smtp/mig-t1/mail-1", nil))
	if err := poll(5*time.Second, func() error {
		if !time.Now().Truncate(time.Second).After(smtpMade) {
			return fmt.Errorf("the clock is still in the second of the engine's SMTP version (%s)", smtpMade)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	newer := "mig-pw-v4-0d6e2b18"
	rememberSecret(newer)
	src.values = append(src.values, newer)
	if _, err := kv.Put(context.Background(), "penguinmails/smtp/mig-t1/mail-1", map[string]interface{}{"username": "admin@mig.example",
		"password": newer, "host": "smtp.mig.example", "port": 587, "encryption": "starttls"}); err != nil {
		t.Fatal(err)
	}
	r := runMigrate(t, bin, "-apply")
	if r.code != 0 || !strings.Contains(r.stdout, "summary: created 0, updated 1, unchanged 3, skipped 1, failed 0 (applied)") {
		t.Fatalf("run after a rotation: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	wantLine(t, r.stdout, "skip", "secret/penguinmails/ssh/mig-t1/admin -> penguinmails/ssh/mig-t1/admin", "KV's material is stale")
	wantLine(t, r.stdout, "update", "secret/penguinmails/smtp/mig-t1/mail-1 -> penguinmails/smtp/mig-t1/mail-1", "differs: password")
	if after := readData(t, sshPath, nil); after["fingerprint"] != rotated["fingerprint"] || apiInt(after["current_version"]) != apiInt(rotated["current_version"]) {
		t.Fatalf("the run replaced the rotated SSH key: version %v -> %v", rotated["current_version"], after["current_version"])
	}
	if readData(t, mount+"/smtp/mig-t1/mail-1", nil)["password"] != newer {
		t.Fatal("the newer KV version of the SMTP login was not copied")
	}
	return r
}

// newestVersionTime is the latest created_time in a read's versions.
func newestVersionTime(t *testing.T, read map[string]interface{}) time.Time {
	t.Helper()
	var newest time.Time
	versions, _ := read["versions"].(map[string]interface{})
	for n, v := range versions {
		info, _ := v.(map[string]interface{})
		made, err := time.Parse(time.RFC3339, fmt.Sprint(info["created_time"]))
		if err != nil {
			t.Fatalf("version %s: created_time: %v", n, err)
		}
		if made.After(newest) {
			newest = made
		}
	}
	return newest
}

func wantLine(t *testing.T, out, action, paths, detail string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, action+" ") && strings.Contains(line, paths) && strings.Contains(line, detail) {
			return
		}
	}
	t.Errorf("no %s row for %s with %q in:\n%s", action, paths, detail, out)
}

// checkMigratedSMTP: KV versions 1 and 3 became the engine's versions 1
// and 2 (version 2 was deleted in KV).
func checkMigratedSMTP(t *testing.T, passwords []string) {
	t.Helper()
	cur := readData(t, mount+"/smtp/mig-t1/mail-1", nil)
	if cur["password"] != passwords[2] || apiInt(cur["current_version"]) != 2 || cur["username"] != "admin@mig.example" ||
		cur["host"] != "smtp.mig.example" || apiInt(cur["port"]) != 587 || cur["encryption"] != "starttls" {
		t.Fatalf("smtp: current_version %v, password is v3: %v, username %v host %v port %v encryption %v",
			cur["current_version"], cur["password"] == passwords[2], cur["username"], cur["host"], cur["port"], cur["encryption"])
	}
	if v1 := readData(t, mount+"/smtp/mig-t1/mail-1", map[string][]string{"version": {"1"}}); v1["password"] != passwords[0] {
		t.Fatal("smtp version 1 is not KV version 1")
	}
}

func checkMigratedAPIKeys(t *testing.T) {
	t.Helper()
	pm := readData(t, mount+"/api-keys/mig-t1/postmark", nil)
	if pm["server_token"] != "mig-pm-token-5e0c19aa" || pm["message_stream"] != "outbound" {
		t.Fatalf("postmark: token copied %v, stream %v", pm["server_token"] == "mig-pm-token-5e0c19aa", pm["message_stream"])
	}
	ses := readData(t, mount+"/api-keys/mig-t1/ses", nil)
	if ses["access_key_id"] != "AKIAMIGRATE00000TEST" || ses["secret_access_key"] != "migSecretAccessKey0123456789abcdefghijKL" ||
		ses["region"] != "eu-west-1" || ses["iam_user"] != "ses-sender" {
		t.Fatalf("ses: key id %v region %v user %v", ses["access_key_id"], ses["region"], ses["iam_user"])
	}
}

// checkMigratedDKIM parses the engine's p= with crypto/x509 and compares it
// with the public half of the key the test made; the imported key is the
// active one and exports as the same private key. The first KV version is
// the engine's version 1, retiring (still published) at its selector.
func checkMigratedDKIM(t *testing.T, key *rsa.PrivateKey) {
	t.Helper()
	d := readData(t, mount+"/dkim/mig-t1/mig-example.com", nil)
	v1, _ := d["versions"].(map[string]interface{})["1"].(map[string]interface{})
	if apiInt(d["current_version"]) != 2 || v1["status"] != "retiring" || v1["selector"] != "pm" {
		t.Fatalf("dkim: current_version %v, version 1 %v", d["current_version"], v1)
	}
	der, err := base64.StdEncoding.DecodeString(d["public_key"].(string))
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	if !key.PublicKey.Equal(pub) || d["selector"] != "pm2" || d["status"] != "active" {
		t.Fatalf("dkim: public key matches %v, selector %v, status %v", key.PublicKey.Equal(pub), d["selector"], d["status"])
	}
	s, err := client.Logical().Write(mount+"/dkim/mig-t1/mig-example.com/private", nil)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(s.Data["private_key"].(string)))
	back, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil || !key.Equal(back) {
		t.Fatalf("dkim: the exported key is not the imported one (%v)", err)
	}
}

// checkMigratedSSH compares the engine's public key with the one
// ssh-keygen -y (OpenSSH, independent of the engine's x/crypto/ssh) derives
// from the source key.
func checkMigratedSSH(t *testing.T, privatePEM string) {
	t.Helper()
	d := readData(t, mount+"/ssh/mig-t1/admin", nil)
	got, _, _, _, err := ssh.ParseAuthorizedKey([]byte(d["public_key"].(string)))
	if err != nil {
		t.Fatal(err)
	}
	installDeps(t, "openssh-client")
	want, err := sshcheck.PublicOf(t.TempDir(), privatePEM, "")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Marshal(), want.Marshal()) || d["imported"] != true {
		t.Fatalf("ssh: engine has %s (imported %v), the source key is %s", ssh.FingerprintSHA256(got), d["imported"], ssh.FingerprintSHA256(want))
	}
}

func readData(t *testing.T, path string, query map[string][]string) map[string]interface{} {
	t.Helper()
	s, err := client.Logical().ReadWithData(path, query)
	if err != nil || s == nil {
		t.Fatalf("read %s: %v (nil: %v)", path, err, s == nil)
	}
	return s.Data
}

func currentVersions(t *testing.T, dests []string) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, d := range dests {
		out[d] = apiInt(readData(t, mount+"/"+d, nil)["current_version"])
	}
	return out
}

// apiInt reads a number from the Go client's answer (a json.Number).
func apiInt(v interface{}) int {
	n, ok := v.(json.Number)
	if !ok {
		return -1
	}
	i, err := n.Int64()
	if err != nil {
		return -1
	}
	return int(i)
}

func equalMaps(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
