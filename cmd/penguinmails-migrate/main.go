// Command penguinmails-migrate copies the platform's secrets from KV v2
// (secret/penguinmails/{smtp,api-keys,dkim,ssh}/{tenant}/{name}) into the
// penguinmails engine. It is a dry run unless -apply is given: it prints the
// plan (each source -> destination and its action) and writes nothing.
//
//	penguinmails-migrate [-apply] [-all-versions] [-source-mount secret]
//	    [-source-prefix penguinmails] [-mount penguinmails]
//
// Vault's address and token come from VAULT_ADDR and VAULT_TOKEN (and the
// other VAULT_* variables of the Vault client). The plan and the summary go
// to stdout; a one-line progress counter goes to stderr when it is a
// terminal. No secret value is ever printed. See docs/migration.md.
//
// Exit status: 0 done; 1 at least one secret failed (a bad source entry, or a
// write or verification that failed); 2 bad flags, Vault could not be
// reached or listed, or -mount holds no engine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/tty"
	"io"
	"os"
	"strings"

	"github.com/hashicorp/vault/api"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/migrate"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	opt, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "penguinmails-migrate:", err)
		return 2
	}
	client, err := api.NewClient(api.DefaultConfig())
	if err != nil {
		fmt.Fprintln(stderr, "penguinmails-migrate: Vault client:", err)
		return 2
	}
	opt.Out = stdout
	if tty.Is(stderr) {
		// The counter is redrawn after each row; a row printed to the same
		// terminal first clears it, so rows never run into the counter.
		opt.Out = clearingWriter{out: stdout, term: stderr}
		opt.Progress = func(done, total int) {
			fmt.Fprintf(stderr, "\r\033[K%d/%d secrets", done, total)
		}
	}
	sum, err := migrate.Run(context.Background(), vaultClient{client.Logical()}, opt)
	if err != nil {
		fmt.Fprintln(stderr, "penguinmails-migrate:", err)
		return 2
	}
	if sum.Failed > 0 {
		return 1
	}
	return 0
}

func parseFlags(args []string, stderr io.Writer) (migrate.Options, error) {
	fs := flag.NewFlagSet("penguinmails-migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var opt migrate.Options
	fs.StringVar(&opt.SourceMount, "source-mount", "secret", "the KV v2 mount to read")
	fs.StringVar(&opt.SourcePrefix, "source-prefix", "penguinmails", "the folder in it that holds {type}/{tenant}/{name}")
	fs.StringVar(&opt.EngineMount, "mount", "penguinmails", "the penguinmails engine's mount")
	fs.BoolVar(&opt.Apply, "apply", false, "write; without it the plan is printed and nothing is written")
	fs.BoolVar(&opt.AllVersions, "all-versions", false, "copy every version KV still holds, oldest first (new secrets only; API keys: current only)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: penguinmails-migrate [flags]   (VAULT_ADDR and VAULT_TOKEN from the environment)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return opt, err
	}
	if fs.NArg() > 0 {
		return opt, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for name, v := range map[string]*string{"source-mount": &opt.SourceMount, "source-prefix": &opt.SourcePrefix, "mount": &opt.EngineMount} {
		*v = strings.Trim(*v, "/")
		if *v == "" {
			return opt, fmt.Errorf("-%s must not be empty", name)
		}
	}
	return opt, nil
}

// vaultClient is migrate.Vault over the Vault API client.
type vaultClient struct{ l *api.Logical }

func (c vaultClient) Read(ctx context.Context, path string, query map[string][]string) (map[string]interface{}, error) {
	s, err := c.l.ReadWithDataWithContext(ctx, path, query)
	if err != nil {
		return nil, short(err)
	}
	if s == nil {
		return nil, nil
	}
	return s.Data, nil
}

func (c vaultClient) List(ctx context.Context, path string) ([]string, error) {
	s, err := c.l.ListWithContext(ctx, path)
	if err != nil || s == nil {
		return nil, short(err)
	}
	raw, _ := s.Data["keys"].([]interface{})
	out := make([]string, 0, len(raw))
	for _, k := range raw {
		if name, ok := k.(string); ok {
			out = append(out, name)
		}
	}
	return out, nil
}

func (c vaultClient) Write(ctx context.Context, path string, data map[string]interface{}) (map[string]interface{}, error) {
	s, err := c.l.WriteWithContext(ctx, path, data)
	if err != nil {
		return nil, short(err)
	}
	if s == nil {
		return nil, nil
	}
	return s.Data, nil
}

func (c vaultClient) Delete(ctx context.Context, path string) error {
	_, err := c.l.DeleteWithContext(ctx, path)
	return short(err)
}

// short keeps Vault's status code and messages and drops the request URL
// and layout, so a plan row stays one line. The engine's messages name
// fields and rules, never values.
func short(err error) error {
	var re *api.ResponseError
	if errors.As(err, &re) {
		msgs := make([]string, 0, len(re.Errors))
		for _, m := range re.Errors {
			msgs = append(msgs, strings.Join(strings.Fields(m), " "))
		}
		return fmt.Errorf("%d: %s", re.StatusCode, strings.Join(msgs, "; "))
	}
	return err
}

// clearingWriter clears the progress line on term before each write to out.
type clearingWriter struct{ out, term io.Writer }

func (w clearingWriter) Write(p []byte) (int, error) {
	fmt.Fprint(w.term, "\r\033[K")
	return w.out.Write(p)
}
