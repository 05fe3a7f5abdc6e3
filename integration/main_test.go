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
	pluginVersion string
	pluginSHA256  string
	client        *api.Client
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
	if code != 0 {
		fmt.Fprintf(os.Stderr, "--- last lines of the Vault log:\n%s", tailFile(vaultLog, 60))
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
	pluginBin, err := binary("PLUGIN_BINARY", func() (string, error) { return buildPlugin(work) })
	if err != nil {
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

	logFile, err := os.Create(vaultLog)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(vaultBin, "server", "-dev",
		"-dev-root-token-id="+rootToken,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
		"-dev-plugin-dir="+pluginDir,
		// Tests log everything, so the leak check sees the most; benchmarks
		// set info, since trace logging of each plugin request costs time.
		"-log-level="+envOr("VAULT_LOG_LEVEL", "trace"))
	cmd.Env = vaultEnv()
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group, and killed by the kernel if this test process dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	srv := &vaultServer{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logFile.Close(); close(srv.done) }()
	if pidFile := os.Getenv("PENGUINMAILS_PIDFILE"); pidFile != "" {
		_ = os.WriteFile(pidFile, []byte(fmt.Sprint(cmd.Process.Pid)), 0o644)
	}

	if client, err = newClient(); err != nil {
		return srv, err
	}
	if err := waitHealthy(srv, 60*time.Second); err != nil {
		return srv, err
	}
	return srv, registerAndMount(pluginBin)
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

func waitHealthy(srv *vaultServer, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-srv.done:
			return errors.New("vault exited during start-up")
		default:
		}
		h, err := client.Sys().Health()
		if err == nil && h.Initialized && !h.Sealed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault not healthy after %s: %v", limit, err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval, not synchronisation
	}
}

// registerAndMount registers the plugin the way an operator would: by
// SHA-256, with a semantic version, then mounts that version.
func registerAndMount(pluginBin string) error {
	sum, err := fileSHA256(pluginBin)
	if err != nil {
		return err
	}
	pluginSHA256 = sum
	if out, err := runVault("plugin", "register", "-sha256="+sum, "-version="+pluginVersion, "secret", pluginName); err != nil {
		return fmt.Errorf("plugin register: %v: %s", err, out)
	}
	if out, err := runVault("secrets", "enable", "-path="+mount, "-plugin-version="+pluginVersion, pluginName); err != nil {
		return fmt.Errorf("secrets enable: %v: %s", err, out)
	}
	return nil
}

func newClient() (*api.Client, error) {
	cfg := api.DefaultConfig()
	cfg.Address = vaultAddr
	cfg.MaxRetries = 0
	c, err := api.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	c.SetToken(rootToken)
	return c, nil
}

// vaultEnv is the environment for Vault and the CLI: no inherited VAULT_*
// settings, and a private HOME.
func vaultEnv() []string {
	env := []string{"VAULT_ADDR=" + vaultAddr, "VAULT_TOKEN=" + rootToken, "HOME=" + vaultHome}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	return env
}

// runVault runs the vault CLI against the test server.
func runVault(args ...string) (string, error) { return runVaultFormat("", args...) }

// runVaultFormat runs the CLI with VAULT_FORMAT set (json, table, ...).
func runVaultFormat(format string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, vaultBin, args...)
	cmd.Env = vaultEnv()
	if format != "" {
		cmd.Env = append(cmd.Env, "VAULT_FORMAT="+format)
	}
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
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
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

func secretsInLog() []string {
	data, err := os.ReadFile(vaultLog)
	if err != nil {
		return nil
	}
	secretsSeen.Lock()
	defer secretsSeen.Unlock()
	var leaked []string
	for _, s := range secretsSeen.values {
		if bytes.Contains(data, []byte(s)) {
			leaked = append(leaked, s)
		}
	}
	return leaked
}

func tailFile(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n") + "\n"
}
