package integration

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The Vault Agent recipes of docs/integrations.md, run as written with the
// real `vault agent`: the agent configs, templates and policies are the
// files in docs/vault-agent, with only their host paths and Vault address
// rewritten to the test's, and the render interval shortened.

const (
	recipeDir    = "../docs/vault-agent"
	approleMount = "approle-agent" // a private auth mount; the recipes say auth/approle
	agentWait    = 30 * time.Second
)

// recipe reads a file of docs/vault-agent.
func recipe(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(recipeDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// rewrite replaces each old string of pairs (old, new, old, new...) in text,
// in turn; an old string the text lacks fails the test, so the recipe and
// the test cannot drift apart unnoticed.
func rewrite(t *testing.T, text string, pairs ...string) string {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !strings.Contains(text, pairs[i]) {
			t.Fatalf("the recipe no longer contains %q", pairs[i])
		}
		text = strings.ReplaceAll(text, pairs[i], pairs[i+1])
	}
	return text
}

func absRecipe(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join(recipeDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
}

// appRoleFiles sets up what an operator gives an agent host: the recipe's
// policy, an AppRole role with it, and the role_id and secret_id files.
func appRoleFiles(t *testing.T, dir, role, policyFile string) (roleIDFile, secretIDFile string) {
	t.Helper()
	if out, err := runVault("auth", "enable", "-path="+approleMount, "approle"); err != nil && !strings.Contains(out, "path is already in use") {
		t.Fatalf("auth enable approle: %v\n%s", err, out)
	}
	vaultCLI(t, "policy", "write", role, absRecipe(t, policyFile))
	vaultCLI(t, "write", "auth/"+approleMount+"/role/"+role, "token_policies="+role, "token_ttl=1h")
	roleID := strings.TrimSpace(vaultCLI(t, "read", "-field=role_id", "auth/"+approleMount+"/role/"+role+"/role-id"))
	secretID := strings.TrimSpace(vaultCLI(t, "write", "-f", "-field=secret_id", "auth/"+approleMount+"/role/"+role+"/secret-id"))
	rememberSecret(secretID)
	roleIDFile, secretIDFile = filepath.Join(dir, "role_id"), filepath.Join(dir, "secret_id")
	writeFile(t, roleIDFile, roleID, 0o600)
	writeFile(t, secretIDFile, secretID, 0o600)
	return roleIDFile, secretIDFile
}

// agentEnv is the environment of an agent: no VAULT_* settings at all (its
// token comes from auto_auth alone) and the test's private HOME.
func agentEnv() []string {
	return append([]string{"HOME=" + vaultHome}, inheritedEnv("VAULT_", "HOME=")...)
}

// startAgent runs `vault agent -config=FILE` with config until the test
// ends; then it stops the agent and checks that its log holds none of the
// secrets the test handled.
func startAgent(t *testing.T, dir, config string) {
	t.Helper()
	cfg := filepath.Join(dir, "agent.hcl")
	writeFile(t, cfg, config, 0o600)
	logPath := filepath.Join(dir, "agent.log")
	agent, err := startServer(logPath, agentEnv(), "agent", "-config="+cfg, "-log-level=debug")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		agent.stop()
		if leaked := secretsInFile(logPath); len(leaked) > 0 {
			t.Errorf("%d secret value(s) appear in the agent's log %s", len(leaked), logPath)
		}
		if t.Failed() {
			t.Logf("agent log:\n%s", tailFile(logPath, 40))
		}
	})
}

// waitForFile polls until path holds want, and says what it held last.
func waitForFile(t *testing.T, path, want, what string) {
	t.Helper()
	err := poll(agentWait, func() error {
		got, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if string(got) != want {
			return fmt.Errorf("%s holds %d bytes, not yet the expected %d", path, len(got), len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// postmapQuery looks key up in the hash table postmap built, as Postfix's
// smtp client would.
func postmapQuery(configDir, table, key string) (string, error) {
	out, err := exec.Command("postmap", "-c", configDir, "-q", key, "hash:"+table).Output()
	return strings.TrimSpace(string(out)), err
}

// TestAgent_PostfixSASLPasswd runs the Postfix recipe: the agent renders
// sasl_passwd from smtp/tenant-1/relay, postmap builds the table Postfix
// reads, and a rotation reaches both without restarting anything.
func TestAgent_PostfixSASLPasswd(t *testing.T) {
	installDeps(t, "postfix")
	const path = mount + "/smtp/tenant-1/relay"
	pw1 := randomSecret(t, "Relay-")
	vaultCLI(t, "write", path, "username=relay@example.com", "password="+pw1, "host=smtp.example.com", "port=587")
	t.Cleanup(func() { _, _ = runVault("delete", path) })

	dir := t.TempDir()
	postfixDir := filepath.Join(dir, "postfix")
	// postmap needs a Postfix configuration directory; defaults suffice.
	writeFile(t, filepath.Join(postfixDir, "main.cf"), "", 0o644)
	sasl := filepath.Join(postfixDir, "sasl_passwd")
	roleID, secretID := appRoleFiles(t, dir, "penguinmails-postfix", "postfix-policy.hcl")
	startAgent(t, dir, rewrite(t, recipe(t, "postfix-agent.hcl"),
		`"https://vault.example.com:8200"`, `"`+vaultAddr+`"`,
		`"auth/approle"`, `"auth/`+approleMount+`"`,
		"/etc/vault-agent/role_id", roleID,
		"/etc/vault-agent/secret_id", secretID,
		"/etc/vault-agent/sasl_passwd.ctmpl", absRecipe(t, "sasl_passwd.ctmpl"),
		`static_secret_render_interval = "1m"`, `static_secret_render_interval = "1s"`,
		`destination = "/etc/postfix/sasl_passwd"`, `destination = "`+sasl+`"`,
		`["postmap", "hash:/etc/postfix/sasl_passwd"]`, `["postmap", "-c", "`+postfixDir+`", "hash:`+sasl+`"]`,
	))

	const key = "[smtp.example.com]:587"
	for i, pw := range []string{pw1, ""} {
		if i == 1 { // rotate, then the agent must pick the new password up
			vaultCLI(t, "write", "-f", path+"/rotate", "reason=agent recipe test")
			s, err := client.Logical().Read(path)
			if err != nil {
				t.Fatal(err)
			}
			pw = s.Data["password"].(string)
			rememberSecret(pw)
			if pw == pw1 {
				t.Fatal("the rotation kept the password")
			}
		}
		waitForFile(t, sasl, key+" relay@example.com:"+pw+"\n", fmt.Sprintf("sasl_passwd with password %d", i+1))
		// The template's exec runs postmap after each render: the table
		// answers the same password.
		err := poll(agentWait, func() error {
			got, err := postmapQuery(postfixDir, sasl, key)
			if err != nil || got != "relay@example.com:"+pw {
				return fmt.Errorf("postmap -q does not answer password %d yet (%v)", i+1, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if fi, err := os.Stat(sasl); err != nil {
		t.Fatal(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Fatalf("sasl_passwd mode %v, want 0600", fi.Mode())
	}
}

// TestAgent_SSHAuthorizedKeys runs the OpenSSH recipes: the agent renders
// authorized_keys from ssh/tenant-1/deploy/authorized_keys across a
// rotation and a revoke, and penguinmails-authorized-keys, the
// AuthorizedKeysCommand alternative, prints the same keys with the token
// the agent leaves in its sink.
func TestAgent_SSHAuthorizedKeys(t *testing.T) {
	installDeps(t, keysCommandPackages...)
	const path = mount + "/ssh/tenant-1/deploy"
	vaultCLI(t, "write", path, "key_type=ed25519")
	t.Cleanup(func() { _, _ = runVault("delete", path) })

	dir := t.TempDir()
	keysFile := filepath.Join(dir, "home", "deploy", ".ssh", "authorized_keys")
	tokenFile := filepath.Join(dir, "run", "token")
	if err := os.MkdirAll(filepath.Dir(tokenFile), 0o755); err != nil {
		t.Fatal(err)
	}
	roleID, secretID := appRoleFiles(t, dir, "penguinmails-sshd", "sshd-policy.hcl")
	startAgent(t, dir, rewrite(t, recipe(t, "sshd-agent.hcl"),
		`"https://vault.example.com:8200"`, `"`+vaultAddr+`"`,
		`"auth/approle"`, `"auth/`+approleMount+`"`,
		"/etc/vault-agent/role_id", roleID,
		"/etc/vault-agent/secret_id", secretID,
		"/run/vault-agent/token", tokenFile,
		"group = 997", fmt.Sprintf("group = %d", os.Getgid()),
		"/etc/vault-agent/authorized_keys.ctmpl", absRecipe(t, "authorized_keys.ctmpl"),
		`static_secret_render_interval = "1m"`, `static_secret_render_interval = "1s"`,
		"/home/deploy/.ssh/authorized_keys", keysFile,
	))

	pub1 := cliData(t, "read", path)["public_key"].(string)
	waitForFile(t, keysFile, pub1+"\n", "authorized_keys with key 1")
	vaultCLI(t, "write", "-f", path+"/rotate", "reason=agent recipe test")
	pub2 := cliData(t, "read", path)["public_key"].(string)
	both := pub2 + "\n" + pub1 + "\n" // key 1 stays valid in its grace period
	waitForFile(t, keysFile, both, "authorized_keys with keys 2 and 1")

	conf := filepath.Join(dir, "authorized-keys.conf")
	writeFile(t, conf, fmt.Sprintf("# test settings\nVAULT_ADDR=%s\nVAULT_TOKEN_FILE=%s\nPENGUINMAILS_TENANT=tenant-1\n", vaultAddr, tokenFile), 0o644)
	out, stderr, err := runKeysCommand(conf, "deploy")
	if err != nil || out != both {
		t.Fatalf("penguinmails-authorized-keys deploy: %v, stderr %q, printed:\n%s\nwant:\n%s", err, stderr, out, both)
	}
	checkFingerprints(t, out, path)
	for _, user := range []string{"nobody", "../deploy", "deploy/../deploy", "Deploy@host"} {
		if out, stderr, err := runKeysCommand(conf, user); err != nil || out != "" {
			t.Errorf("penguinmails-authorized-keys %q: %v, stderr %q, printed %q; want nothing, exit 0", user, err, stderr, out)
		}
	}
	badToken := filepath.Join(dir, "bad-token")
	writeFile(t, badToken, "hvs.not-a-token", 0o600)
	badConf := filepath.Join(dir, "bad.conf")
	writeFile(t, badConf, fmt.Sprintf("VAULT_ADDR=%s\nVAULT_TOKEN_FILE=%s\nPENGUINMAILS_TENANT=tenant-1\n", vaultAddr, badToken), 0o644)
	if out, stderr, err := runKeysCommand(badConf, "deploy"); err == nil || out != "" || !strings.Contains(stderr, "403") {
		t.Errorf("with a bad token: %v, stderr %q, printed %q; want exit 1, nothing printed, a 403 named", err, stderr, out)
	}

	vaultCLI(t, "write", path+"/revoke", "reason=agent recipe test")
	waitForFile(t, keysFile, "", "authorized_keys after the revoke")
	if out, stderr, err := runKeysCommand(conf, "deploy"); err != nil || out != "" {
		t.Fatalf("penguinmails-authorized-keys after the revoke: %v, stderr %q, printed %q", err, stderr, out)
	}
}

// keysCommandPackages are what scripts/penguinmails-authorized-keys needs.
var keysCommandPackages = []string{"curl", "jq"}

// runKeysCommand runs scripts/penguinmails-authorized-keys as sshd would,
// with no environment but the settings file.
func runKeysCommand(conf, user string) (stdout, stderr string, err error) {
	cmd := exec.Command("../scripts/penguinmails-authorized-keys", user)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "PENGUINMAILS_AK_CONF=" + conf}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// checkFingerprints checks with ssh-keygen that each printed line is a key
// the engine lists as valid now, with the fingerprint it reports.
func checkFingerprints(t *testing.T, printed, path string) {
	t.Helper()
	keys := cliData(t, "read", path+"/authorized_keys")["keys"].([]interface{})
	lines := strings.Split(strings.TrimSuffix(printed, "\n"), "\n")
	if len(lines) != len(keys) {
		t.Fatalf("printed %d keys, the engine lists %d", len(lines), len(keys))
	}
	for i, line := range lines {
		k := keys[i].(map[string]interface{})
		if fp := keygenFP(t, line); fp != k["fingerprint"] {
			t.Errorf("line %d: ssh-keygen -lf says %s, the engine %v", i+1, fp, k["fingerprint"])
		}
	}
}

// TestAgent_DocsShowTheTestedFiles: docs/integrations.md shows each recipe
// file of docs/vault-agent as it is, so what the tests run is what readers
// copy.
func TestAgent_DocsShowTheTestedFiles(t *testing.T) {
	doc, err := os.ReadFile("../docs/integrations.md")
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(recipeDir, "*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no recipe files in %s: %v", recipeDir, err)
	}
	for _, f := range files {
		if text := recipe(t, filepath.Base(f)); !strings.Contains(string(doc), "\n"+text+"```\n") {
			t.Errorf("docs/integrations.md does not show %s as it is", f)
		}
	}
}

// TestAgent_SSHDLoginWithAuthorizedKeysCommand logs in through a real sshd
// whose only source of keys is penguinmails-authorized-keys: the key from
// Vault logs in, its predecessor too during its grace period, and neither
// after a revoke. The login user is root, the one account every machine has
// (secret ssh/tenant-1/root), so the test adds no system user.
func TestAgent_SSHDLoginWithAuthorizedKeysCommand(t *testing.T) {
	installDeps(t, append([]string{"openssh-server"}, keysCommandPackages...)...)
	const path = mount + "/ssh/tenant-1/root"
	vaultCLI(t, "write", path, "key_type=ed25519")
	t.Cleanup(func() { _, _ = runVault("delete", path) })

	// sshd runs the command as AuthorizedKeysCommandUser (nobody), which
	// must read the settings and the token: a world-readable directory.
	dir := worldReadableTempDir(t, "penguinmails-sshd-")
	vaultCLI(t, "policy", "write", "penguinmails-sshd", absRecipe(t, "sshd-policy.hcl"))
	token := strings.TrimSpace(vaultCLI(t, "token", "create", "-policy=penguinmails-sshd", "-ttl=10m", "-field=token"))
	rememberSecret(token)
	tokenFile, conf := filepath.Join(dir, "token"), filepath.Join(dir, "authorized-keys.conf")
	writeFile(t, tokenFile, token, 0o644)
	// An address with a trailing slash, as operators often write it.
	writeFile(t, conf, fmt.Sprintf("VAULT_ADDR=%s/\nVAULT_TOKEN_FILE=%s\nPENGUINMAILS_TENANT=tenant-1\n", vaultAddr, tokenFile), 0o644)
	port := startSSHD(t, dir, conf)

	key1 := downloadKey(t, dir, path, "key1")
	sshLogin(t, port, key1, true)
	vaultCLI(t, "write", "-f", path+"/rotate", "reason=sshd test")
	key2 := downloadKey(t, dir, path, "key2")
	sshLogin(t, port, key2, true)
	sshLogin(t, port, key1, true) // in its grace period
	vaultCLI(t, "write", path+"/revoke", "reason=sshd test")
	sshLogin(t, port, key2, false)
	sshLogin(t, port, key1, false)
}

// startSSHD runs sshd on a free loopback port with keys from the command
// alone, and stops it when the test ends.
func startSSHD(t *testing.T, dir, conf string) int {
	t.Helper()
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // its privilege separation directory
		t.Fatal(err)
	}
	hostKey := filepath.Join(dir, "host_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", hostKey).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../scripts/penguinmails-authorized-keys")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sshd_config")
	writeFile(t, cfg, fmt.Sprintf(`ListenAddress 127.0.0.1
Port %d
HostKey %s
PidFile none
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AuthorizedKeysFile none
# sshd passes no environment: env names the settings file.
AuthorizedKeysCommand /usr/bin/env PENGUINMAILS_AK_CONF=%s %s %%u
AuthorizedKeysCommandUser nobody
`, port, hostKey, conf, script), 0o644)
	logPath := filepath.Join(dir, "sshd.log")
	cmd := exec.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg)
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		_ = cmd.Wait()
		logFile.Close()
		if leaked := secretsInFile(logPath); len(leaked) > 0 {
			t.Errorf("%d secret value(s) appear in sshd's log %s", len(leaked), logPath)
		}
		if t.Failed() {
			t.Logf("sshd log:\n%s", tailFile(logPath, 30))
		}
	})
	err = poll(agentWait, func() error {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		t.Fatalf("sshd does not listen: %v", err)
	}
	return port
}

// downloadKey exports the secret's current private key to a file.
func downloadKey(t *testing.T, dir, path, name string) string {
	t.Helper()
	priv := vaultCLI(t, "write", "-f", "-field=private_key", path+"/private")
	rememberKey(priv)
	file := filepath.Join(dir, name)
	writeFile(t, file, priv, 0o600)
	return file
}

// sshLogin logs in as root with key alone and runs a command.
func sshLogin(t *testing.T, port int, key string, wantOK bool) {
	t.Helper()
	out, err := exec.Command("ssh", "-p", fmt.Sprint(port), "-i", key, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10",
		"-F", "/dev/null", "root@127.0.0.1", "echo", "logged-in").CombinedOutput()
	switch ok := err == nil && strings.Contains(string(out), "logged-in"); {
	case ok && !wantOK:
		t.Errorf("ssh with %s logged in, want refused", filepath.Base(key))
	case !ok && wantOK:
		t.Errorf("ssh with %s: %v, want a login:\n%s", filepath.Base(key), err, out)
	}
}
