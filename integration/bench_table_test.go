package integration

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/dkimcheck"
)

// TestBenchTable is issue #11's benchmark: every path of the table measured
// in one run against the one Vault TestMain started, 16 concurrent clients,
// then the plugin's memory with 100,000 stored secrets. It is a benchmark,
// not a timed test: it fails only when a request fails, never on a figure.
// scripts/integration.sh bench runs it (PENGUINMAILS_BENCH_TABLE=1); the
// settings are environment variables:
//
//	BENCH_SECONDS      measured seconds per row, spread over the rounds (6)
//	BENCH_ROUNDS       rounds over all rows, so that the load of a shared
//	                   machine falls on every row alike (3)
//	BENCH_CLIENTS      concurrent clients (16, as in the issue)
//	BENCH_SECRETS      secrets stored for the memory step (100000)
//	BENCH_SKIP_MEMORY  1 leaves the memory step out (quick runs)
//	BENCH_ONLY         row keys (kv, floor, smtp, apikey, transit-rsa, dkim-rsa,
//	                   transit-ed, dkim-ed, batch-ed, batch-rsa, batch-refused), comma-separated:
//	                   only those rows and the rows they are compared with
//	BENCH_WRITE        1 also writes the table to docs/benchmarks.md
func TestBenchTable(t *testing.T) {
	if os.Getenv("PENGUINMAILS_BENCH_TABLE") != "1" {
		t.Skip("a benchmark: scripts/integration.sh bench runs it with PENGUINMAILS_BENCH_TABLE=1")
	}
	cfg := benchSettings(t)
	bc := benchClient(t, cfg.clients)
	machine := describeMachine(t)
	cost := measureSignCost(t)
	rows := onlyRows(t, benchRows(t, bc))
	loadBefore := loadAverage()
	measureRows(t, rows, cfg, benchProcesses(t))
	machine.load = loadBefore + " before, " + loadAverage() + " after the table"

	var mem *memoryReport
	if os.Getenv("BENCH_SKIP_MEMORY") != "1" {
		mem = benchMemory(t, bc, cfg.secrets, 2*cfg.clients)
	}
	table := renderBenchTable(machine, cfg, rows, cost, mem)
	fmt.Print("\n" + table + "\n")
	if os.Getenv("BENCH_WRITE") == "1" {
		doc := benchDocHeader + table + benchDocReading
		if err := os.WriteFile("../docs/benchmarks.md", []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		fmt.Println("bench: wrote docs/benchmarks.md")
	}
}

type benchConfig struct {
	perRow  time.Duration // measured time per row over all rounds
	rounds  int
	clients int
	secrets int
}

func benchSettings(t *testing.T) benchConfig {
	t.Helper()
	cfg := benchConfig{
		perRow:  time.Duration(envInt(t, "BENCH_SECONDS", 6)) * time.Second,
		rounds:  envInt(t, "BENCH_ROUNDS", 3),
		clients: envInt(t, "BENCH_CLIENTS", 16),
		secrets: envInt(t, "BENCH_SECRETS", 100000),
	}
	if cfg.perRow <= 0 || cfg.rounds <= 0 || cfg.clients <= 0 || cfg.secrets <= 0 {
		t.Fatalf("bench settings must be positive: %+v", cfg)
	}
	return cfg
}

func envInt(t *testing.T, name string, def int) int {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: not an integer", name, v)
	}
	return n
}

// benchClient is a Vault client for many concurrent requests: the default
// transport keeps only GOMAXPROCS+1 idle connections per host, so with 16
// clients on 2 cores most requests would open a new TCP connection and the
// table would measure connection set-up instead of Vault.
func benchClient(t *testing.T, clients int) *api.Logical {
	t.Helper()
	cfg := api.DefaultConfig()
	cfg.Address = vaultAddr
	cfg.MaxRetries = 0
	cfg.HttpClient.Transport.(*http.Transport).MaxIdleConnsPerHost = 2 * clients
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken(rootToken)
	return c.Logical()
}

// benchRow is one line of the table. perRequest is the signatures one
// request makes (100 for a batch), so that rate counts signatures.
type benchRow struct {
	key, name, unit string
	perRequest      int
	op              func() error
	base            string  // key of the row the ratio compares with; "" for a baseline
	target          float64 // the minimum ratio; 0 when it sets none
	also            string  // a second row to compare with, for information
	aside           bool    // measured for the bounds below the table, compared with nothing

	requests    int
	elapsed     time.Duration
	latencies   []time.Duration
	cpu         cpuTimes // CPU the processes spent while the row ran
	cpuRequests int      // every request the row sent, warm-up included, which that CPU served
}

func (r *benchRow) rate() float64 {
	return float64(r.requests*r.perRequest) / r.elapsed.Seconds()
}

// benchRows sets up every path of the table and checks each once (a read
// returns its secret, a DKIM signature verifies) before anything is timed.
func benchRows(t *testing.T, l *api.Logical) []*benchRow {
	t.Helper()
	kv := kvBaselineMount(t)
	transit := transitKeys(t, l)
	smtp := benchSMTPSecret(t, l)
	apiKey := benchAPIKey(t, l)
	dkimRSA := benchDKIMDomain(t, l, "rsa-2048")
	dkimEd := benchDKIMDomain(t, l, "ed25519")

	kvPath := kv + "/data/smtp/tenant-bench/mail-1"
	if _, err := l.Write(kvPath, map[string]interface{}{"data": benchSMTPFields}); err != nil {
		t.Fatal(err)
	}
	rows := []*benchRow{
		{key: "kv", name: "KV v2 read (built into Vault)", unit: "reads/s", op: readOp(l, kvPath, "data")},
		{key: "floor", name: "plugin floor: `penguinmails/config` read (no storage)", unit: "reads/s",
			op: readOp(l, mount+"/config", "cache_size"), base: "kv"},
		{key: "smtp", name: "`smtp/{tenant}/{name}` read (5 versions)", unit: "reads/s",
			op: readOp(l, smtp, "password"), base: "floor", target: 0.9, also: "kv"},
		{key: "apikey", name: "`api-keys/{tenant}/postmark` read", unit: "reads/s",
			op: readOp(l, apiKey, "server_token"), base: "floor", also: "kv"},
		{key: "transit-rsa", name: "transit `sign` rsa-2048 (pkcs1v15)", unit: "signs/s", op: transit["rsa-2048"]},
		{key: "dkim-rsa", name: "`dkim/.../sign` rsa-2048", unit: "signs/s",
			op: dkimRSA.single, base: "transit-rsa", target: 0.9},
		{key: "transit-ed", name: "transit `sign` ed25519", unit: "signs/s", op: transit["ed25519"]},
		{key: "dkim-ed", name: "`dkim/.../sign` ed25519", unit: "signs/s",
			op: dkimEd.single, base: "floor", target: 0.9, also: "transit-ed"},
		{key: "batch-ed", name: "`dkim/.../sign` ed25519, batch of 100", unit: "sigs/s", perRequest: benchBatchSize,
			op: dkimEd.batch, base: "transit-ed", target: 5},
		{key: "batch-rsa", name: "`dkim/.../sign` rsa-2048, batch of 100", unit: "sigs/s", perRequest: benchBatchSize,
			op: dkimRSA.batch, base: "transit-rsa"},
		{key: "batch-refused", name: "the ed25519 batch of 100, every item refused before signing", unit: "requests/s",
			op: dkimEd.refused, aside: true},
	}
	for _, r := range rows {
		if r.perRequest == 0 {
			r.perRequest = 1
		}
		if err := r.op(); err != nil {
			t.Fatalf("%s: %v", r.name, err)
		}
	}
	return rows
}

// readOp reads path and fails unless the answer has field.
func readOp(l *api.Logical, path, field string) func() error {
	return func() error {
		s, err := l.Read(path)
		if err != nil {
			return err
		}
		if s == nil || s.Data[field] == nil {
			return fmt.Errorf("read %s: no %s in the answer", path, field)
		}
		return nil
	}
}

// benchSMTPSecret stores the SMTP credential with five versions, as
// BenchmarkSecretRead does.
func benchSMTPSecret(t *testing.T, l *api.Logical) string {
	t.Helper()
	path := mount + "/smtp/tenant-bench/table-1"
	if _, err := l.Write(path, benchSMTPFields); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })
	for range 4 {
		if _, err := l.Write(path+"/rotate", map[string]interface{}{"reason": "bench"}); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// benchAPIKey stores a Postmark server token: writing one calls no
// provider (only its rotation tests the new token).
func benchAPIKey(t *testing.T, l *api.Logical) string {
	t.Helper()
	path := mount + "/api-keys/tenant-bench/postmark"
	if _, err := l.Write(path, map[string]interface{}{"server_token": "bench-postmark-token-0123456789"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })
	return path
}

// transitKeys enables Vault's transit engine with an rsa-2048 and an
// ed25519 key and returns a sign of the DKIM test message with each.
func transitKeys(t *testing.T, l *api.Logical) map[string]func() error {
	t.Helper()
	const transit = "transitbench"
	enableOnce(t, transit, "transit")
	input := base64.StdEncoding.EncodeToString([]byte(dkimMessage))
	ops := map[string]func() error{}
	for keyType, extra := range map[string]map[string]interface{}{
		"rsa-2048": {"signature_algorithm": "pkcs1v15"}, // DKIM's RSA scheme
		"ed25519":  {},
	} {
		key := transit + "/keys/bench-" + keyType
		if _, err := l.Write(key, map[string]interface{}{"type": keyType}); err != nil {
			t.Fatalf("transit key %s: %v", keyType, err)
		}
		in := map[string]interface{}{"input": input}
		for k, v := range extra {
			in[k] = v
		}
		signPath := transit + "/sign/bench-" + keyType
		ops[keyType] = func() error {
			s, err := l.Write(signPath, in)
			if err != nil {
				return err
			}
			if sig, _ := s.Data["signature"].(string); !strings.HasPrefix(sig, "vault:v1:") {
				return fmt.Errorf("transit sign %s: no signature in the answer", keyType)
			}
			return nil
		}
	}
	return ops
}

const benchBatchSize = 100

// benchDKIM are a domain's timed requests: one message, a batch, and the
// same batch with every item refused before anything is signed (what the
// request costs without its signatures, for the bound in the table).
type benchDKIM struct{ single, batch, refused func() error }

// benchDKIMDomain creates a DKIM key that signs at once, verifies a single
// and a batch signature against its published record, and returns both
// requests. The timed requests check only that each item has a signature.
func benchDKIMDomain(t *testing.T, l *api.Logical, keyType string) benchDKIM {
	t.Helper()
	path := mount + "/dkim/tenant-bench/table-" + keyType + ".example.com"
	if _, err := l.Write(path, map[string]interface{}{"key_type": keyType, "activation": "immediate"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = l.Delete(path) })
	records := publishedRecords(t, l, path)
	headers := strings.Join(benchSignedHeaders, ",")
	message := base64.StdEncoding.EncodeToString([]byte(dkimMessage))
	single := map[string]interface{}{"message": message, "headers": headers}
	items := make([]interface{}, benchBatchSize)
	for i := range items {
		items[i] = map[string]interface{}{"message": message}
	}
	batch := map[string]interface{}{"batch_input": items, "headers": headers}

	sign := func(in map[string]interface{}) ([]string, error) {
		s, err := l.Write(path+"/sign", in)
		if err != nil {
			return nil, err
		}
		return dkimSignatures(s)
	}
	sigs, err := sign(single)
	if err == nil {
		err = verifyAll(records, sigs)
	}
	if err == nil {
		if sigs, err = sign(batch); err == nil && len(sigs) != benchBatchSize {
			err = fmt.Errorf("%d signatures for %d messages", len(sigs), benchBatchSize)
		}
	}
	if err == nil {
		err = verifyAll(records, sigs)
	}
	if err != nil {
		t.Fatalf("%s sign: %v", keyType, err)
	}
	return benchDKIM{
		single: func() error { _, err := sign(single); return err },
		batch: func() error {
			sigs, err := sign(batch)
			if err == nil && len(sigs) != benchBatchSize {
				err = fmt.Errorf("batch: %d signatures for %d messages", len(sigs), benchBatchSize)
			}
			return err
		},
		refused: refusedBatch(l, path+"/sign", keyType, items, headers),
	}
}

// refusedBatch is the batch request with an algorithm the domain's key
// does not have, which every item is refused for after its message and
// options are read, before any signing; it fails unless every item is.
func refusedBatch(l *api.Logical, path, keyType string, items []interface{}, headers string) func() error {
	wrong := "rsa"
	if strings.HasPrefix(keyType, "rsa") {
		wrong = "ed25519"
	}
	in := map[string]interface{}{"batch_input": items, "headers": headers, "algorithm": wrong}
	return func() error {
		s, err := l.Write(path, in)
		if err != nil {
			return err
		}
		results, _ := s.Data["batch_results"].([]interface{})
		if len(results) != benchBatchSize {
			return fmt.Errorf("refused batch: %d results for %d messages", len(results), benchBatchSize)
		}
		for i, r := range results {
			if item, _ := r.(map[string]interface{}); item["error"] == nil {
				return fmt.Errorf("refused batch: item %d was not refused", i)
			}
		}
		return nil
	}
}

// dkimSignatures returns the DKIM-Signature fields of a single or a batch
// answer; an item with an error, or no signature, is an error.
func dkimSignatures(s *api.Secret) ([]string, error) {
	if s == nil {
		return nil, errors.New("sign: empty answer")
	}
	if sig, ok := s.Data["dkim_signature"].(string); ok {
		return []string{sig}, nil
	}
	results, _ := s.Data["batch_results"].([]interface{})
	var sigs []string
	for i, r := range results {
		item, _ := r.(map[string]interface{})
		sig, _ := item["dkim_signature"].(string)
		if sig == "" {
			return nil, fmt.Errorf("batch_results[%d]: no signature: %v", i, item["error"])
		}
		sigs = append(sigs, sig)
	}
	if len(sigs) == 0 {
		return nil, errors.New("sign: no signature in the answer")
	}
	return sigs, nil
}

// verifyAll checks every signature over the test message with go-msgauth's
// verifier and the published records.
func verifyAll(records map[string]string, sigs []string) error {
	for i, sig := range sigs {
		if err := dkimcheck.Verify(records, sig+dkimMessage); err != nil {
			return fmt.Errorf("signature %d: %v", i, err)
		}
	}
	return nil
}

// measureRows runs every row for cfg.perRow in cfg.rounds rounds, each row
// once per round in table order, so that other load on a shared machine is
// spread over all rows instead of falling on a few.
func measureRows(t *testing.T, rows []*benchRow, cfg benchConfig, procs benchProcs) {
	t.Helper()
	slice := cfg.perRow / time.Duration(cfg.rounds)
	warm := min(500*time.Millisecond, slice/2)
	for round := 1; round <= cfg.rounds; round++ {
		for _, r := range rows {
			before := procs.times(t)
			elapsed, lat, all, err := measure(cfg.clients, warm, slice, r.op)
			if err != nil {
				t.Fatalf("%s: %v", r.name, err)
			}
			r.cpu = r.cpu.add(procs.times(t).sub(before))
			r.cpuRequests += all
			r.requests += len(lat)
			r.elapsed += elapsed
			r.latencies = append(r.latencies, lat...)
		}
		t.Logf("bench: round %d of %d done", round, cfg.rounds)
	}
}

// measure runs op from clients goroutines, each one request after another.
// Requests that end in the warm-up are not counted; the window then lasts
// d, and longer if need be until 2×clients requests ended in it, so that a
// slow row (a batch of 100 RSA signatures takes seconds) still counts every
// client several times. It returns the window's length and the latencies
// of the requests that ended in it, and the count of every request answered
// (warm-up included); the first error ends the run.
func measure(clients int, warm, d time.Duration, op func() error) (time.Duration, []time.Duration, int, error) {
	type done struct {
		at      time.Time
		latency time.Duration
	}
	start := time.Now().Add(warm)
	end := start.Add(d)
	minCount := int64(2 * clients)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		all      []done
		counted  atomic.Int64
		stopAt   atomic.Int64 // UnixNano of the window's end, once known
		firstErr atomic.Pointer[error]
		answered atomic.Int64
	)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []done
			for stopAt.Load() == 0 && firstErr.Load() == nil {
				t0 := time.Now()
				if err := op(); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					break
				}
				t1 := time.Now()
				answered.Add(1)
				if t1.Before(start) {
					continue
				}
				mine = append(mine, done{t1, t1.Sub(t0)})
				if n := counted.Add(1); !t1.Before(end) && n >= minCount {
					stopAt.CompareAndSwap(0, t1.UnixNano())
				}
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return 0, nil, 0, *p
	}
	// Requests that ended after the window closed, while their goroutine
	// had not yet seen it close, are left out.
	stop := time.Unix(0, stopAt.Load())
	var lat []time.Duration
	for _, r := range all {
		if !r.at.After(stop) {
			lat = append(lat, r.latency)
		}
	}
	return stop.Sub(start), lat, int(answered.Load()), nil
}

// percentile returns the p-th percentile (0 < p <= 1) of sorted latencies.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.5) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// renderBenchTable formats the machine, the table and the memory report as
// Markdown.
func renderBenchTable(m machineInfo, cfg benchConfig, rows []*benchRow, cost signCost, mem *memoryReport) string {
	byKey := map[string]*benchRow{}
	for _, r := range rows {
		byKey[r.key] = r
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, "Run of %s (UTC), %s.\n\n", time.Now().UTC().Format("2006-01-02 15:04"), m.String())
	fmt.Fprintf(&sb, "%d concurrent clients; each row measured for %s in %d rounds of %s (after %s of warm-up each; longer while fewer than %d requests ended), rows interleaved.\n\n",
		cfg.clients, cfg.perRow, cfg.rounds, cfg.perRow/time.Duration(cfg.rounds),
		min(500*time.Millisecond, cfg.perRow/time.Duration(cfg.rounds)/2), 2*cfg.clients)
	sb.WriteString("| path | rate | p50 | p99 | requests | CPU ms per request: Vault / plugin / clients | compared with | target | met |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---:|---|---|---|\n")
	for _, r := range rows {
		slices.Sort(r.latencies)
		fmt.Fprintf(&sb, "| %s | %s %s | %s | %s | %d | %s | %s | %s | %s |\n",
			r.name, thousands(r.rate()), r.unit, ms(percentile(r.latencies, 0.5)), ms(percentile(r.latencies, 0.99)),
			r.requests, r.cpuText(), comparison(r, byKey), targetText(r, byKey), verdict(r, byKey))
	}
	sb.WriteString("\nLatencies are per request: a batch row's p50 and p99 are those of one request of 100 messages. " +
		"CPU is per request too (a batch's is that of 100 signatures), user and system time of every thread, warm-up included.\n")
	sb.WriteString(renderBounds(byKey, cost, cfg.clients))
	if mem != nil {
		sb.WriteString("\n" + mem.String())
	}
	return sb.String()
}

func comparison(r *benchRow, rows map[string]*benchRow) string {
	if r.aside {
		return "— (for the bounds below)"
	}
	if r.base == "" {
		return "1.00 (baseline)"
	}
	s := fmt.Sprintf("%.2f× %s", r.rate()/rows[r.base].rate(), rows[r.base].short())
	if r.also != "" {
		s += fmt.Sprintf(", %.2f× %s", r.rate()/rows[r.also].rate(), rows[r.also].short())
	}
	return s
}

func targetText(r *benchRow, rows map[string]*benchRow) string {
	if r.target == 0 {
		return "—"
	}
	return fmt.Sprintf("≥ %.1f× %s", r.target, rows[r.base].short())
}

func verdict(r *benchRow, rows map[string]*benchRow) string {
	if r.target == 0 {
		return "—"
	}
	if r.rate()/rows[r.base].rate() >= r.target {
		return "met"
	}
	return "**not met**"
}

// short names a row inside a comparison.
func (r *benchRow) short() string {
	return map[string]string{
		"kv": "KV v2", "floor": "floor", "transit-rsa": "transit rsa", "transit-ed": "transit ed25519",
	}[r.key]
}

func thousands(f float64) string {
	s := strconv.FormatInt(int64(f+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
}

const benchDocHeader = `# Benchmarks

Generated by ` + "`make bench BENCH_WRITE=1`" + ` (integration/bench_table_test.go,
TestBenchTable) against a real Vault dev server with the plugin registered
and mounted, every figure below from the same run and the same Vault. Do not
edit by hand; run it again.

`

const benchDocReading = `
## How to read it

Every row is requests sent by 16 concurrent clients over HTTP on loopback to
one Vault dev server (in-memory storage, the file audit device on, as the
integration harness sets it up). The rate counts answered requests per
second (for the batch rows, signatures: 100 per request); p50 and p99 are the
latencies of single requests as the client saw them. The rows are measured
in rounds, each row once per round in turn, so that load from elsewhere on
the machine is spread over all of them rather than falling on one.

A ratio compares two rows of this run only. The baselines are Vault's own
engines and the plugin floor: KV v2 reads (built into Vault, no plugin hop)
and transit signs with the same key types and the same message, and
` + "`penguinmails/config`" + `, a read the plugin answers from memory, which is what
any request through the plugin's gRPC channel costs at least. The targets
are those of issue #11: an SMTP read at least 0.9 of the floor, a DKIM
rsa-2048 sign at least 0.9 of transit's, a DKIM ed25519 sign at least 0.9 of
the floor, and a batch of 100 ed25519 signatures at least 5 times transit's
single-request ed25519 rate. "met" and "not met" compare this run's ratio
with the target and nothing else; rows without a target are there for
comparison.

Two costs no engine change removes sit in these ratios. A plugin request
crosses Vault's gRPC channel to the plugin process; KV v2 and transit are
built into Vault and do not. And a sign is a write (` + "`POST`" + `): before any
write Vault asks the backend for an existence check (vault/request_handling.go,
` + "`CheckToken`" + `, for every create and update), which for a plugin is a second
gRPC round trip carrying the whole request (the message, or all 100 of a
batch), so a DKIM sign crosses twice where the floor crosses once.

The CPU column says where each request's time went: user and system time
of the Vault process, of the plugin process and of the test process (the
clients), read from /proc before and after each row and divided by the
requests it sent. With 16 clients on 2 cores every core is busy, so
a rate is close to the cores divided by the CPU per request, and the
paragraph under the table turns the CPU figures into what each unmet
target would take: for a DKIM rsa-2048 sign, the CPU the target allows
above transit's sign against what the plugin process spends on the lightest
request it answers; for a batch, what it costs Vault and the clients, and
what the plugin spends on the same batch when it refuses every item before
signing (the extra row for that). The signature arithmetic is measured
apart, in the test process, with the same Go crypto the plugin and Vault
use; it moves by a tenth or so between runs.

The figures are noisy: the machine that made them has 2 cores shared with
other work (the load averages above say how busy it was), and the client,
Vault and the plugin share those cores too. Ratios of neighbouring rows are
more reliable than absolute rates; compare runs by their ratios, and rerun
before reading much into a difference of a few percent.

The memory figures are the resident set (VmRSS from /proc) of the plugin
process, the child of the Vault process serving every mount of the plugin,
before the secrets are written, after, and after every secret was read
once, which leaves the decoded-entry cache full at its bound
(` + "`config cache_size`" + `, 10,000 entries by default; see docs/api.md,
Caching). The file audit device is off for that step only (it measures
memory, and auditing 200,000 requests would only slow it down). RSS counts
what the Go runtime holds, including heap it has freed but not yet returned
to the system. Vault's own RSS includes its in-memory storage of the same
secrets.
`
