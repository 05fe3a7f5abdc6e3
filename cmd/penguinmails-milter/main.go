// Command penguinmails-milter is a milter for Postfix and Sendmail that has
// outgoing mail DKIM-signed by the penguinmails engine in Vault
// (dkim/{tenant}/{domain}/sign), so the private keys never leave Vault.
//
//	penguinmails-milter -listen inet:127.0.0.1:8891 -vault-addr https://vault:8200 \
//	    -token-file /run/penguinmails-milter/token -domains /etc/penguinmails-milter/domains
//
// The From domain picks the key: the -domains file maps domains (and
// *.parent wildcards) to tenants; with -owner-lookup, other domains are
// looked up at dkim-domains/{domain}. Mail from other domains passes
// unsigned. The token file is the one Vault Agent keeps fresh. All the
// logic lives in internal/dkimmilter; this file only reads flags.
//
// Exit status: 0 stopped by SIGTERM or SIGINT; 1 the listener failed; 2 bad
// flags or files.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/emersion/go-milter"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimkey"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimmilter"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

type config struct {
	listen, vaultAddr, caCert, mount, tokenFile, domains string
	onFailure, headers, canon, logLevel                  string
	ownerLookup                                          bool
	ownerTTL, timeout                                    time.Duration
	maxMessage, batchItems, batchBytes                   int
	perDomain, maxRequests                               int
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "penguinmails-milter:", err)
		os.Exit(2)
	}
	filter, err := newFilter(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "penguinmails-milter:", err)
		os.Exit(2)
	}
	os.Exit(serve(cfg, filter))
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("penguinmails-milter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	c := &config{}
	addr := os.Getenv("VAULT_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:8200"
	}
	fs.StringVar(&c.listen, "listen", "inet:127.0.0.1:8891", "where the MTA connects: inet:host:port or unix:/path")
	fs.StringVar(&c.vaultAddr, "vault-addr", addr, "Vault's address (default $VAULT_ADDR)")
	fs.StringVar(&c.caCert, "vault-cacert", os.Getenv("VAULT_CACERT"), "PEM file of the CA that signed Vault's certificate")
	fs.StringVar(&c.mount, "mount", "penguinmails", "the engine's mount path")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the Vault token (Vault Agent's file sink); re-read when it changes")
	fs.StringVar(&c.domains, "domains", "", "file of \"domain tenant\" lines (\"*.example.com tenant\" for subdomains)")
	fs.BoolVar(&c.ownerLookup, "owner-lookup", false, "look up domains not in -domains at dkim-domains/{domain} (needs read there)")
	fs.DurationVar(&c.ownerTTL, "owner-ttl", 5*time.Minute, "how long an owner lookup (or its absence) is cached")
	fs.StringVar(&c.onFailure, "on-failure", "tempfail", "when a message cannot be signed: tempfail (451, the MTA retries) or accept (send it unsigned)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Second, "bound on the owner lookup and signature of one message")
	fs.IntVar(&c.maxMessage, "max-message-bytes", 760<<10, "largest message sent to Vault (its listener refuses JSON strings of 1 MiB, i.e. about 768 KiB of message in base64)")
	fs.IntVar(&c.batchItems, "batch-max-items", 100, "messages in one sign request (1-1000)")
	fs.IntVar(&c.batchBytes, "batch-max-bytes", 8<<20, "bytes of messages in one sign request")
	fs.IntVar(&c.perDomain, "per-domain-requests", 2, "sign requests in flight per domain")
	fs.IntVar(&c.maxRequests, "max-requests", 8, "sign requests in flight in all")
	fs.StringVar(&c.headers, "headers", "", "comma-separated header fields to sign (default: the engine's list)")
	fs.StringVar(&c.canon, "canonicalization", "", "header/body canonicalization (default: the engine's relaxed/relaxed)")
	fs.StringVar(&c.logLevel, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return c, c.check()
}

func (c *config) check() error {
	switch {
	case c.tokenFile == "":
		return errors.New("-token-file is required")
	case c.domains == "" && !c.ownerLookup:
		return errors.New("give -domains, -owner-lookup or both: otherwise no domain is signed")
	case c.onFailure != "tempfail" && c.onFailure != "accept":
		return fmt.Errorf("-on-failure must be tempfail or accept, not %q", c.onFailure)
	case c.batchItems < 1 || c.batchItems > 1000:
		return fmt.Errorf("-batch-max-items must be 1 to 1000 (the engine's batch limit), not %d", c.batchItems)
	case c.perDomain < 1 || c.maxRequests < 1:
		return errors.New("-per-domain-requests and -max-requests must be at least 1")
	case c.maxMessage < 1 || c.batchBytes < c.maxMessage:
		return errors.New("-max-message-bytes must be at least 1 and at most -batch-max-bytes")
	case c.timeout <= 0 || c.ownerTTL < 0:
		return errors.New("-timeout must be positive and -owner-ttl not negative")
	}
	// The token and the messages go there: the rule the engine applies to
	// every credential it sends (https unless the host is this machine). The
	// value is not quoted, as it might carry a password.
	if _, err := provider.CheckBaseURL(c.vaultAddr); err != nil {
		return fmt.Errorf("-vault-addr (default $VAULT_ADDR): %w", err)
	}
	return c.checkSignOptions()
}

// checkSignOptions refuses at start, with the engine's own rules, headers
// and a canonicalization that the engine would refuse for every message
// (each then deferred or sent unsigned).
func (c *config) checkSignOptions() error {
	if c.headers != "" {
		if _, err := dkimkey.CheckHeaders(strings.Split(c.headers, ",")); err != nil {
			return fmt.Errorf("-headers: %w", err)
		}
	}
	if c.canon != "" {
		if _, _, err := dkimkey.ParseCanonicalization(c.canon); err != nil {
			return fmt.Errorf("-canonicalization: %w", err)
		}
	}
	return nil
}

func newFilter(c *config) (*dkimmilter.Filter, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("-log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	httpClient, err := newHTTPClient(c)
	if err != nil {
		return nil, err
	}
	vault := &dkimmilter.VaultClient{
		Addr: c.vaultAddr, Mount: c.mount, HTTP: httpClient,
		Token:            &dkimmilter.TokenFile{Path: c.tokenFile},
		Canonicalization: c.canon,
	}
	if c.headers != "" {
		vault.Headers = strings.Split(c.headers, ",")
	}
	resolver := &dkimmilter.Resolver{TTL: c.ownerTTL}
	if c.domains != "" {
		if resolver.Map, err = readDomains(c.domains); err != nil {
			return nil, err
		}
	}
	if c.ownerLookup {
		resolver.Lookup = vault
	}
	return &dkimmilter.Filter{
		Resolver: resolver,
		Signer: &dkimmilter.Batcher{Signer: vault, MaxItems: c.batchItems, MaxBytes: c.batchBytes,
			PerKey: c.perDomain, MaxRequests: c.maxRequests, Timeout: c.timeout},
		FailOpen:        c.onFailure == "accept",
		Timeout:         c.timeout,
		MaxMessageBytes: c.maxMessage,
		Log:             log,
	}, nil
}

func readDomains(path string) (*dkimmilter.DomainMap, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("-domains: %w", err)
	}
	defer f.Close()
	m, err := dkimmilter.ParseDomainMap(f)
	if err != nil {
		return nil, fmt.Errorf("-domains %s: %w", path, err)
	}
	return m, nil
}

// newHTTPClient keeps connections to Vault alive, enough for every request
// that may be in flight, so batches do not pay for new TLS handshakes.
func newHTTPClient(c *config) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = c.maxRequests + 1 // + the owner lookups
	if c.caCert != "" {
		pem, err := os.ReadFile(c.caCert)
		if err != nil {
			return nil, fmt.Errorf("-vault-cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-vault-cacert %s: no PEM certificate", c.caCert)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: c.timeout}, nil
}

// serve listens where the MTA connects until SIGTERM or SIGINT.
func serve(c *config, filter *dkimmilter.Filter) int {
	network, address, ok := strings.Cut(c.listen, ":")
	if network == "inet" {
		network = "tcp"
	}
	if !ok || (network != "tcp" && network != "unix") {
		fmt.Fprintf(os.Stderr, "penguinmails-milter: -listen %q: want inet:host:port or unix:/path\n", c.listen)
		return 2
	}
	if network == "unix" {
		_ = os.Remove(address) // a socket left by an earlier run
	}
	ln, err := net.Listen(network, address)
	if err == nil && network == "unix" {
		// The MTA connects as another user: let the milter's group in.
		err = os.Chmod(address, 0o660)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "penguinmails-milter:", err)
		return 1
	}
	srv := filter.Server()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-sigs; srv.Close() }()
	filter.Log.Info("listening", "address", ln.Addr().String(), "vault", c.vaultAddr, "on_failure", c.onFailure)
	if err := srv.Serve(ln); err != nil && !errors.Is(err, milter.ErrServerClosed) {
		filter.Log.Error("serving", "error", err.Error())
		return 1
	}
	return 0
}
