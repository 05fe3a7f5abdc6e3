// Command penguinmails-audit reads Vault audit logs and reports the accesses
// to the penguinmails mount, in the feature document's record format, with
// alerts for suspicious activity.
//
//	penguinmails-audit [flags] [file ...]     (no file, or "-": stdin)
//
// Files are JSON lines as Vault's file audit device writes them, plain or
// gzipped (detected by content). Output goes to stdout as JSON lines or CSV;
// progress (on a terminal) and a summary go to stderr.
//
// Exit status: 0 done; 1 an input could not be read or written; 2 bad flags;
// 3 with --fail-on-alert, at least one alert was raised.
package main

import (
	"errors"
	"flag"
	"fmt"
	"github.com/penguinmails/vault-plugin-penguinmails/internal/tty"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/auditlog"
)

type sink interface {
	auditlog.Sink
	Flush() error
}

type config struct {
	opts        auditlog.Options
	format      string
	progress    string
	quiet       bool
	failOnAlert bool
	inputs      []string
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "penguinmails-audit:", err)
		os.Exit(2)
	}
	os.Exit(run(cfg, os.Stdin, os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (*config, error) {
	fs := flag.NewFlagSet("penguinmails-audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: penguinmails-audit [flags] [audit.log[.gz] ... | -]")
		fs.PrintDefaults()
	}
	def := auditlog.DefaultRuleConfig()
	cfg := &config{}
	o := &cfg.opts
	var since, until, rules, offHours string
	fs.StringVar(&o.Mount, "mount", auditlog.DefaultMount, "the plugin's mount path")
	fs.StringVar(&cfg.format, "format", "json", "output format: json (one object a line) or csv")
	fs.StringVar(&o.Filter.Tenant, "tenant", "", "only this tenant (caller's tenant_id or the path's tenant)")
	fs.StringVar(&o.Filter.SecretType, "type", "", "only this secret type (smtp, ssh, dkim, api-keys, oauth, config, rotate...)")
	fs.StringVar(&o.Filter.Operation, "operation", "", "only this operation (create, read, update, patch, delete, list)")
	fs.StringVar(&since, "since", "", "only entries at or after this time (RFC 3339)")
	fs.StringVar(&until, "until", "", "only entries before this time (RFC 3339)")
	fs.BoolVar(&o.AlertsOnly, "alerts-only", false, "print alerts only, no access records")
	fs.StringVar(&rules, "rules", "all", "rules to run: all, none, or a comma-separated list of "+strings.Join(auditlog.AllRules, ", "))
	fs.IntVar(&o.Rules.FailThreshold, "fail-threshold", def.FailThreshold, "failed_requests: this many failures from one source...")
	fs.DurationVar(&o.Rules.FailWindow, "fail-window", def.FailWindow, "...within this window")
	fs.IntVar(&o.Rules.ReadThreshold, "read-threshold", def.ReadThreshold, "bulk_reads: more than this many secret reads by one caller...")
	fs.DurationVar(&o.Rules.ReadWindow, "read-window", def.ReadWindow, "...within this window")
	fs.StringVar(&offHours, "off-hours", def.OffHours.String(), "off_hours_read: the UTC window HH:MM-HH:MM, or off")
	fs.IntVar(&o.Rules.MaxKeys, "max-keys", def.MaxKeys, "sources and callers each window rule tracks at most")
	fs.DurationVar(&o.ResponseWait, "response-wait", auditlog.DefaultResponseWait, "how long (log time) a request entry waits for its response before it is reported as no_response")
	fs.IntVar(&o.MaxLine, "max-line", auditlog.DefaultMaxLine, "longest line read, in bytes; longer lines are skipped and counted")
	fs.StringVar(&cfg.progress, "progress", "auto", "progress on stderr: auto (when stderr is a terminal), always or never")
	fs.BoolVar(&cfg.quiet, "quiet", false, "no summary on stderr")
	fs.BoolVar(&cfg.failOnAlert, "fail-on-alert", false, "exit with status 3 when an alert was raised")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cfg.inputs = fs.Args()
	if len(cfg.inputs) == 0 {
		cfg.inputs = []string{"-"}
	}
	return cfg, cfg.check(since, until, rules, offHours)
}

// check validates the flags parseFlags could not type-check.
func (cfg *config) check(since, until, rules, offHours string) error {
	o := &cfg.opts
	var err error
	if o.Filter.Since, err = parseTime("since", since); err != nil {
		return err
	}
	if o.Filter.Until, err = parseTime("until", until); err != nil {
		return err
	}
	if !o.Filter.Since.IsZero() && !o.Filter.Until.IsZero() && !o.Filter.Since.Before(o.Filter.Until) {
		return errors.New("invalid --since/--until: since must be before until")
	}
	if o.Rules.Enabled, err = auditlog.ParseRules(rules); err != nil {
		return fmt.Errorf("invalid --rules: %w", err)
	}
	if o.Rules.OffHours, err = auditlog.ParseOffHours(offHours); err != nil {
		return fmt.Errorf("invalid --off-hours: %w", err)
	}
	switch {
	case cfg.format != "json" && cfg.format != "csv":
		return fmt.Errorf("invalid --format %q: json or csv", cfg.format)
	case cfg.progress != "auto" && cfg.progress != "always" && cfg.progress != "never":
		return fmt.Errorf("invalid --progress %q: auto, always or never", cfg.progress)
	case o.Filter.Operation != "" && !strings.Contains(" create read update patch delete list ", " "+o.Filter.Operation+" "):
		return fmt.Errorf("invalid --operation %q: create, read, update, patch, delete or list", o.Filter.Operation)
	case o.Rules.FailThreshold < 1 || o.Rules.ReadThreshold < 0:
		return errors.New("invalid --fail-threshold or --read-threshold: at least 1 (fail) and 0 (read)")
	case o.Rules.FailWindow <= 0 || o.Rules.ReadWindow <= 0 || o.ResponseWait <= 0:
		return errors.New("invalid --fail-window, --read-window or --response-wait: must be positive")
	case o.MaxLine < 1024 || o.Rules.MaxKeys < 1:
		return errors.New("invalid --max-line or --max-keys: at least 1024 bytes and 1 key")
	}
	for _, in := range cfg.inputs {
		if in == "-" {
			continue
		}
		if _, err := os.Stat(in); err != nil {
			return err
		}
	}
	return nil
}

func parseTime(name, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("invalid --%s %q: expected RFC 3339, like 2026-01-31T22:00:00Z", name, s)
	}
	return t, nil
}

// run processes every input in turn and returns the exit status.
func run(cfg *config, stdin io.Reader, stdout, stderr io.Writer) int {
	var out sink = auditlog.NewJSONWriter(stdout)
	if cfg.format == "csv" {
		out = auditlog.NewCSVWriter(stdout)
	}
	p := auditlog.NewProcessor(cfg.opts, out)
	start := time.Now()
	stop := startProgress(cfg.progress, stderr, &p.Stats)
	err := readAll(p, cfg.inputs, stdin)
	if err == nil {
		err = p.Close()
	}
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	stop()
	if !cfg.quiet {
		summary(stderr, cfg.opts.Mount, &p.Stats, time.Since(start))
	}
	if err != nil {
		fmt.Fprintln(stderr, "penguinmails-audit:", err)
		return 1
	}
	if cfg.failOnAlert && totalAlerts(&p.Stats) > 0 {
		return 3
	}
	return 0
}

func readAll(p *auditlog.Processor, inputs []string, stdin io.Reader) error {
	for _, in := range inputs {
		if err := readOne(p, in, stdin); err != nil {
			return fmt.Errorf("%s: %w", in, err)
		}
	}
	return nil
}

func readOne(p *auditlog.Processor, in string, stdin io.Reader) error {
	if in == "-" {
		return p.Read(stdin)
	}
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	return p.Read(f)
}

// startProgress prints lines read and lines per second every second while
// the run lasts, on one line of a terminal; the returned func clears it.
func startProgress(mode string, stderr io.Writer, st *auditlog.Stats) func() {
	if mode == "never" || (mode == "auto" && !tty.Is(stderr)) {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		var lastLines int64
		last := time.Now()
		for {
			select {
			case <-done:
				fmt.Fprint(stderr, "\r\033[K")
				return
			case now := <-tick.C:
				lines := st.Lines.Load()
				rate := float64(lines-lastLines) / now.Sub(last).Seconds()
				fmt.Fprintf(stderr, "\r\033[K%d lines, %.1f MB read, %.0f lines/s", lines, float64(st.Bytes.Load())/1e6, rate)
				lastLines, last = lines, now
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func summary(w io.Writer, mount string, st *auditlog.Stats, took time.Duration) {
	lines := st.Lines.Load()
	fmt.Fprintf(w, "penguinmails-audit: %d lines (%.1f MB) in %s, %.0f lines/s; %d entries of %s, %d records printed",
		lines, float64(st.Bytes.Load())/1e6, took.Round(time.Millisecond), float64(lines)/max(took.Seconds(), 1e-9),
		st.MountEntries, mount, st.Records)
	if st.Unanswered > 0 {
		fmt.Fprintf(w, ", %d requests without a response", st.Unanswered)
	}
	if st.Malformed > 0 {
		fmt.Fprintf(w, ", %d malformed lines skipped", st.Malformed)
	}
	if st.RuleKeysEvicted > 0 {
		fmt.Fprintf(w, ", %d rule keys evicted (raise --max-keys)", st.RuleKeysEvicted)
	}
	fmt.Fprintf(w, "; %d alerts", totalAlerts(st))
	rules := make([]string, 0, len(st.Alerts))
	for r := range st.Alerts {
		rules = append(rules, r)
	}
	sort.Strings(rules)
	for i, r := range rules {
		sep := ", "
		if i == 0 {
			sep = " ("
		}
		fmt.Fprintf(w, "%s%s %d", sep, r, st.Alerts[r])
	}
	if len(rules) > 0 {
		fmt.Fprint(w, ")")
	}
	fmt.Fprintln(w)
}

func totalAlerts(st *auditlog.Stats) int64 {
	var n int64
	for _, c := range st.Alerts {
		n += c
	}
	return n
}
