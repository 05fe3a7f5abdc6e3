// Package integration drives the plugin inside a real Vault server, through
// the vault CLI and the Go vault/api client.
//
// TestMain starts one Vault dev server on a free loopback port with its own
// plugin directory, registers the freshly built plugin by SHA-256 with a
// semantic version, mounts it at penguinmails/, runs the tests and always
// stops Vault. VAULT_BINARY and PLUGIN_BINARY name the binaries (the Makefile
// sets them); without them TestMain builds both (the Vault build is cached).
package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

const (
	mount      = "penguinmails"
	pluginName = "vault-plugin-penguinmails"
	rootToken  = "root"
)

// The running server, set up once by TestMain.
var (
	vaultBin      string
	vaultAddr     string
	vaultHome     string // HOME for Vault and the CLI, so ~/.vault-token is never touched
	vaultLog      string
	auditLog      string // the file audit device's log; leak-checked like vaultLog
	pluginVersion string
	pluginBin     string // the plugin binary under test, outside any plugin directory
	pluginSHA256  string
	client        *api.Client
	vaultPID      int // the shared server's process, parent of its plugin process
)

// secretsSeen collects secret values the tests handled; after the run the
// Vault server log (which includes the plugin's log) must contain none.
var secretsSeen struct {
	sync.Mutex
	values []string
}

// rememberSecret marks a value that must never reach a log.
func rememberSecret(v string) {
	if len(v) < 8 {
		return // too short to search for without false alarms
	}
	secretsSeen.Lock()
	secretsSeen.values = append(secretsSeen.values, v)
	secretsSeen.Unlock()
}

// randomSecret is a fresh random value, remembered for the log checks.
func randomSecret(t *testing.T, prefix string) string {
	t.Helper()
	s := prefix + randomHex(t, 16)
	rememberSecret(s)
	return s
}

// randomHex is n random bytes in hex.
func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	work, err := os.MkdirTemp("", "penguinmails-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(work)

	srv, err := startVault(work)
	if srv != nil {
		defer srv.stop()
		// Ctrl-C or a kill of `go test` must not leave Vault behind.
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
		go func() {
			<-sigs
			srv.stop()
			os.Exit(2)
		}()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: cannot start Vault: %v\n%s", err, tailFile(vaultLog, 40))
		return 1
	}

	code := m.Run()
	if leaked := secretsInLog(); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "integration: %d secret value(s) appear in the Vault server log %s\n", len(leaked), vaultLog)
		code = 1
	}
	if leaked := secretsInFile(auditLog); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "integration: %d secret value(s) appear in the audit log %s\n", len(leaked), auditLog)
		code = 1
	}
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- last lines of the shared Vault's log, trace lines left out:\n%s", tailFile(vaultLog, 20, "[TRACE]"))
	}
	return code
}

type vaultServer struct {
	cmd  *exec.Cmd
	once sync.Once
	done chan struct{}
}

func startVault(work string) (*vaultServer, error) {
	var err error
	if vaultBin, err = binary("VAULT_BINARY", buildVault); err != nil {
		return nil, err
	}
	pluginVersion = envOr("PLUGIN_VERSION", "v0.1.0")
	if pluginBin, err = binary("PLUGIN_BINARY", func() (string, error) { return buildPlugin(work) }); err != nil {
		return nil, err
	}
	if pluginSHA256, err = fileSHA256(pluginBin); err != nil {
		return nil, err
	}

	pluginDir := filepath.Join(work, "plugins")
	vaultHome = filepath.Join(work, "home")
	vaultLog = filepath.Join(work, "vault.log")
	for _, d := range []string{pluginDir, vaultHome} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	if err := copyFile(pluginBin, filepath.Join(pluginDir, pluginName), 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	vaultAddr = fmt.Sprintf("http://127.0.0.1:%d", port)

	srv, err := startServer(vaultLog, vaultEnv(), "server", "-dev",
		"-dev-root-token-id="+rootToken,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
		"-dev-plugin-dir="+pluginDir,
		// Tests log everything, so the leak check sees the most; benchmarks
		// set info, since trace logging of each plugin request costs time.
		"-log-level="+envOr("VAULT_LOG_LEVEL", "trace"))
	if err != nil {
		return nil, err
	}
	vaultPID = srv.cmd.Process.Pid
	if client, err = newClientFor(vaultAddr, rootToken); err != nil {
		return srv, err
	}
	if err := waitHealthy(srv, client, 60*time.Second); err != nil {
		return srv, err
	}
	if err := registerAndMount(runVault); err != nil {
		return srv, err
	}
	return srv, enableFileAudit(filepath.Join(work, "audit.log"))
}

// enableFileAudit turns on a file audit device, so that the tests can check
// that no secret reaches the audit log either: Vault hashes request and
// response data there, but copies error messages as they are.
func enableFileAudit(path string) error {
	auditLog = path
	return client.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": path},
	})
}

// startServer starts `vault args...` with its output in logPath.
func startServer(logPath string, env []string, args ...string) (*vaultServer, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(vaultBin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group (which its plugin processes join), and killed by the
	// kernel if this test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	srv := &vaultServer{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logFile.Close(); close(srv.done) }()
	recordPID(cmd.Process.Pid)
	return srv, nil
}

// recordPID appends a server's pid (one a line) to PENGUINMAILS_PIDFILE, from
// which scripts/integration.sh stops whatever outlives the tests.
func recordPID(pid int) {
	pidFile := os.Getenv("PENGUINMAILS_PIDFILE")
	if pidFile == "" {
		return
	}
	f, err := os.OpenFile(pidFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintln(f, pid)
}

// stop ends Vault: SIGTERM to its process group, SIGKILL if it lingers.
func (s *vaultServer) stop() {
	s.once.Do(func() {
		pgid := s.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.done
		}
	})
}

// exited reports whether the server process has ended.
func (s *vaultServer) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// kill ends the server at once, as a crash would: SIGKILL to its process
// group, which takes its plugin processes with it.
func (s *vaultServer) kill() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

// waitHealthy waits until the server answers as initialized and unsealed.
func waitHealthy(srv *vaultServer, c *api.Client, limit time.Duration) error {
	return poll(limit, func() error {
		if srv.exited() {
			return stopPolling(errors.New("vault exited during start-up"))
		}
		h, err := c.Sys().Health()
		if err != nil {
			return err
		}
		if !h.Initialized || h.Sealed {
			return fmt.Errorf("initialized=%t sealed=%t", h.Initialized, h.Sealed)
		}
		return nil
	})
}

// errStop marks an error that ends a poll at once.
var errStop = errors.New("stop polling")

func stopPolling(err error) error { return fmt.Errorf("%w: %w", errStop, err) }

// poll calls check until it returns nil, an error from stopPolling, or limit
// passes; the error says what was still missing.
func poll(limit time.Duration, check func() error) error {
	return pollEvery(limit, 200*time.Millisecond, check)
}

// registerAndMount registers the plugin the way an operator would: by
// SHA-256, with a semantic version, then mounts that version. run runs the
// vault CLI against the server (or cluster) to set up.
func registerAndMount(run func(args ...string) (string, error)) error {
	if out, err := run("plugin", "register", "-sha256="+pluginSHA256, "-version="+pluginVersion, "secret", pluginName); err != nil {
		return fmt.Errorf("plugin register: %v: %s", err, out)
	}
	if out, err := run("secrets", "enable", "-path="+mount, "-plugin-version="+pluginVersion, pluginName); err != nil {
		return fmt.Errorf("secrets enable: %v: %s", err, out)
	}
	return nil
}

func newClientFor(addr, token string) (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = addr
	cfg.MaxRetries = 0
	// A server answers itself (a standby by forwarding to the active node);
	// a redirect elsewhere would hide a standby that cannot forward.
	cfg.DisableRedirects = true
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(token)
	return c, nil
}

// vaultEnv is the environment for the test server and the CLI against it.
func vaultEnv() []string { return envFor(vaultAddr, rootToken) }

// envFor is the environment for a Vault server or CLI talking to addr: no
// inherited VAULT_* settings, and a private HOME.
func envFor(addr, token string) []string {
	return append([]string{"VAULT_ADDR=" + addr, "VAULT_TOKEN=" + token, "HOME=" + vaultHome}, inheritedEnv("VAULT_", "HOME=")...)
}

// inheritedEnv is this process's environment without the entries that
// start with any of drop ("VAULT_", "HOME=").
func inheritedEnv(drop ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(drop, func(p string) bool { return strings.HasPrefix(kv, p) }) {
			env = append(env, kv)
		}
	}
	return env
}

// runVault runs the vault CLI against the test server.
func runVault(args ...string) (string, error) { return runVaultFormat("", args...) }

// runVaultFormat runs the CLI with VAULT_FORMAT set (json, table, ...).
func runVaultFormat(format string, args ...string) (string, error) {
	env := vaultEnv()
	if format != "" {
		env = append(env, "VAULT_FORMAT="+format)
	}
	return runVaultEnv(env, args...)
}

// runVaultEnv runs the vault CLI with the given environment.
func runVaultEnv(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vaultBin, args...)
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// vaultCLI runs a CLI command that must succeed and returns its output.
func vaultCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runVault(args...)
	if err != nil {
		t.Fatalf("vault %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// vaultCLIFails runs a CLI command that must fail and returns its output.
func vaultCLIFails(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runVault(args...)
	if err == nil {
		t.Fatalf("vault %s succeeded, want a failure:\n%s", strings.Join(args, " "), out)
	}
	return out
}

// statusCode returns the HTTP status of a Go client error, or 0.
func statusCode(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// readRaw reads like Logical().ReadWithData but keeps what a 404 says: the
// api client turns every 404 into (nil, nil). Any answer but a 200 is an
// error carrying the status (see statusCode) and Vault's error text.
func readRaw(l *api.Logical, path string, query map[string][]string) (*api.Secret, error) {
	resp, err := l.ReadRawWithData(path, query)
	if resp != nil {
		defer resp.Body.Close()
	}
	if err != nil {
		return nil, err
	}
	s, err := api.ParseSecret(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("status %d: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != 200 || s == nil {
		return nil, fmt.Errorf("status %d, not a secret", resp.StatusCode)
	}
	return s, nil
}

func binary(env string, build func() (string, error)) (string, error) {
	if p := os.Getenv(env); p != "" {
		return filepath.Abs(p)
	}
	return build()
}

func buildVault() (string, error) {
	out, err := exec.Command("bash", "../scripts/build-vault.sh").Output()
	if err != nil {
		return "", fmt.Errorf("scripts/build-vault.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

func buildPlugin(work string) (string, error) {
	bin := filepath.Join(work, pluginName)
	// The version is stamped as the Makefile does: Vault refuses to register
	// a binary under a -version other than the one the plugin reports.
	ldflags := "-X github.com/penguinmails/vault-plugin-penguinmails.Version=" + pluginVersion
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", bin, "../cmd/vault-plugin-penguinmails")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building the plugin: %v\n%s", err, out)
	}
	return bin, nil
}

func freePort() (int, error) {
	ports, err := freePorts(1)
	if err != nil {
		return 0, err
	}
	return ports[0], nil
}

// freePorts reserves n distinct loopback ports: all listeners stay open
// until the last is chosen, so no port is handed out twice.
func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, mode)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func secretsInLog() []string { return secretsInFile(vaultLog) }

// secretsInFile returns the remembered secret values that appear in a file.
func secretsInFile(path string) []string {
	secretsSeen.Lock()
	values := slices.Clone(secretsSeen.values)
	secretsSeen.Unlock()
	return valuesIn(path, values)
}

// valuesIn returns the values (of 8 characters or more) that appear in a
// file; a file it cannot read counts as one, so a check never passes
// unread.
func valuesIn(path string, values []string) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return []string{"cannot read " + path + ": " + err.Error()}
	}
	var found []string
	for _, v := range values {
		if len(v) >= 8 && bytes.Contains(data, []byte(v)) {
			found = append(found, v)
		}
	}
	return found
}

// tailFile returns the last n lines of a file, leaving out lines that
// contain any of skip.
func tailFile(path string, n int, skip ...string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	var lines []string
	for _, line := range strings.Split(strings.TrimRight(string(data), "\n"), "\n") {
		if !containsAny(line, skip) {
			lines = append(lines, line)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}

func containsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// installDeps installs the Debian packages a test needs and the machine
// lacks, through the project's script (apt-get, non-interactive), so that a
// fresh machine passes.
func installDeps(t *testing.T, pkgs ...string) {
	t.Helper()
	out, err := exec.Command("bash", append([]string{"../scripts/install-deps.sh"}, pkgs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("scripts/install-deps.sh %s: %v\n%s", strings.Join(pkgs, " "), err, out)
	}
}
