package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const tsClientDir = "../clients/typescript"

// TestTypeScriptClient runs the TypeScript client's own tests (node:test,
// compiled with tsc) against this Vault, with a token that holds only the
// policy its README gives.
func TestTypeScriptClient(t *testing.T) {
	if _, err := exec.LookPath("npm"); err != nil {
		t.Fatal("the TypeScript client's tests need node >= 20 and npm on PATH")
	}
	vaultCLI(t, "policy", "write", "penguinmails-ts-client", filepath.Join(tsClientDir, "policy.hcl"))
	token := strings.TrimSpace(vaultCLI(t, "token", "create", "-policy=penguinmails-ts-client", "-ttl=30m", "-field=token"))
	rememberSecret(token)
	// Every secret the client's tests send contains the mark, so the
	// harness's log checks cover them too.
	mark := randomSecret(t, "ts-secret-")
	npmCI(t)

	out, err := npm(t, 5*time.Minute, []string{
		"VAULT_ADDR=" + vaultAddr, "VAULT_TOKEN=" + token, "PENGUINMAILS_ADMIN_TOKEN=" + rootToken,
		"PENGUINMAILS_SECRET_MARK=" + mark,
	}, "test")
	if err != nil {
		t.Fatalf("npm test: %v\n%s", err, out)
	}
	// node --test ends with its counts; a run that found no test must fail.
	pass := regexp.MustCompile(`(?m)^# pass (\d+)$`).FindStringSubmatch(out)
	if pass == nil || pass[1] == "0" || !strings.Contains(out, "\n# fail 0\n") {
		t.Fatalf("npm test passed without running tests:\n%s", out)
	}
	t.Logf("npm test: %s tests passed", pass[1])
}

// npmCI installs the locked dependencies once per package-lock.json: a stamp
// in node_modules records the lock it was installed from (npm ci removes
// node_modules, stamp included, so a changed lock always reinstalls).
func npmCI(t *testing.T) {
	t.Helper()
	sum, err := fileSHA256(filepath.Join(tsClientDir, "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	stamp := filepath.Join(tsClientDir, "node_modules", ".penguinmails-lock-sha256")
	if got, err := os.ReadFile(stamp); err == nil && string(got) == sum {
		return
	}
	if out, err := npm(t, 5*time.Minute, nil, "ci", "--no-audit", "--no-fund"); err != nil {
		t.Fatalf("npm ci: %v\n%s", err, out)
	}
	if err := os.WriteFile(stamp, []byte(sum), 0o644); err != nil {
		t.Fatal(err)
	}
}

// npm runs npm in the client's directory with no inherited VAULT_* settings.
func npm(t *testing.T, limit time.Duration, env []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", args...)
	cmd.Dir = tsClientDir
	cmd.Env = append(inheritedEnv("VAULT_"), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestTypeScriptClient_READMEShowsThePolicy: the README shows policy.hcl,
// the policy TestTypeScriptClient's token holds, as it is (comments aside).
func TestTypeScriptClient_READMEShowsThePolicy(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(tsClientDir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	policy, err := os.ReadFile(filepath.Join(tsClientDir, "policy.hcl"))
	if err != nil {
		t.Fatal(err)
	}
	var rules []string
	for _, line := range strings.SplitAfter(string(policy), "\n") {
		if !strings.HasPrefix(line, "#") {
			rules = append(rules, line)
		}
	}
	if !strings.Contains(string(readme), "```hcl\n"+strings.Join(rules, "")+"```\n") {
		t.Error("the TypeScript client's README does not show policy.hcl")
	}
}
