package integration

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTimes is the CPU (user and system, all threads) three processes
// spent: Vault, the plugin, and this test process, which is the clients.
// The table shows it per request, so that a ratio can be read as where the
// time went rather than only how much there was.
type cpuTimes struct{ vault, plugin, client time.Duration }

func (c cpuTimes) add(o cpuTimes) cpuTimes {
	return cpuTimes{c.vault + o.vault, c.plugin + o.plugin, c.client + o.client}
}

func (c cpuTimes) sub(o cpuTimes) cpuTimes {
	return cpuTimes{c.vault - o.vault, c.plugin - o.plugin, c.client - o.client}
}

// benchProcs are the processes whose CPU the table reports.
type benchProcs struct{ vault, plugin int }

func benchProcesses(t *testing.T) benchProcs {
	t.Helper()
	return benchProcs{vault: vaultPID, plugin: pluginPID(t)}
}

func (p benchProcs) times(t *testing.T) cpuTimes {
	t.Helper()
	return cpuTimes{vault: procCPU(t, strconv.Itoa(p.vault)), plugin: procCPU(t, strconv.Itoa(p.plugin)), client: procCPU(t, "self")}
}

// clockTick is the unit of /proc/PID/stat's times (USER_HZ), 100 on every
// Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// procCPU reads utime+stime of /proc/PID/stat: the 14th and 15th fields of
// proc(5), indexes 11 and 12 of procStat's.
func procCPU(t *testing.T, pid string) time.Duration {
	t.Helper()
	fields, err := procStat(pid)
	if err == nil && len(fields) < 13 {
		err = fmt.Errorf("%d fields after the name", len(fields))
	}
	if err != nil {
		t.Fatalf("/proc/%s/stat: %v", pid, err)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			t.Fatalf("/proc/%s/stat: %v", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick
}

// procStat returns the fields of /proc/PID/stat after the command name,
// which is in parentheses and may hold spaces: index 0 is proc(5)'s third
// field (the state), index 1 the parent pid.
func procStat(pid string) ([]string, error) {
	stat, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])), nil
}

// cpuText is a row's CPU per request, in milliseconds, by process.
func (r *benchRow) cpuText() string {
	if r.cpuRequests == 0 {
		return "—"
	}
	per := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond)/float64(r.cpuRequests), 'f', 2, 64)
	}
	return per(r.cpu.vault) + " / " + per(r.cpu.plugin) + " / " + per(r.cpu.client)
}

// onlyRows keeps the rows BENCH_ONLY names (keys, comma-separated), and the
// rows they are compared with, for quick runs while working on one path.
func onlyRows(t *testing.T, rows []*benchRow) []*benchRow {
	t.Helper()
	only := os.Getenv("BENCH_ONLY")
	if only == "" {
		return rows
	}
	keep := strings.Split(only, ",")
	for _, r := range rows {
		if slices.Contains(keep, r.key) {
			keep = append(keep, r.base, r.also)
		}
		if r.key == "batch-ed" && slices.Contains(keep, r.key) {
			keep = append(keep, "batch-refused") // its bound needs the refused batch
		}
	}
	var out []*benchRow
	for _, r := range rows {
		if slices.Contains(keep, r.key) {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		t.Fatalf("BENCH_ONLY=%s names no row", only)
	}
	fmt.Printf("bench: only %d rows (BENCH_ONLY=%s)\n", len(out), only)
	return out
}

// signCost is the CPU one signature's arithmetic takes in this process, the
// same Go crypto the plugin and Vault use: the least any signer pays.
type signCost struct{ ed25519, rsa2048 time.Duration }

// measureSignCost signs a SHA-256 digest in one goroutine for a while with
// each key type, before the table, while the machine is otherwise idle.
func measureSignCost(t *testing.T) signCost {
	t.Helper()
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	digest := sha256.Sum256([]byte(dkimMessage))
	return signCost{
		ed25519: perOp(t, func() error { ed25519.Sign(ed, digest[:]); return nil }),
		rsa2048: perOp(t, func() error { _, err := rsa.SignPKCS1v15(nil, rk, crypto.SHA256, digest[:]); return err }),
	}
}

// perOp runs op for 300ms of this process's CPU and returns the CPU per call.
func perOp(t *testing.T, op func() error) time.Duration {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	n := 0
	for threadCPU()-start < 300*time.Millisecond {
		for range 10 {
			if err := op(); err != nil {
				t.Fatal(err)
			}
		}
		n += 10
	}
	return (threadCPU() - start) / time.Duration(n)
}

// threadCPU is the calling thread's CPU time (user and system).
func threadCPU() time.Duration {
	const rusageThread = 1 // RUSAGE_THREAD
	var ru syscall.Rusage
	_ = syscall.Getrusage(rusageThread, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerRequest is a row's CPU per request, all three processes together.
func (r *benchRow) cpuPerRequest() time.Duration {
	if r.cpuRequests == 0 {
		return 0
	}
	return (r.cpu.vault + r.cpu.plugin + r.cpu.client) / time.Duration(r.cpuRequests)
}

// renderBounds says what the unmet targets would take, from this run's CPU
// figures: with more clients than cores the machine is saturated, so a
// row's rate follows its CPU per request and a ratio of rates is close to
// the inverse ratio of CPU per request. It is left out when a row it needs
// was not measured (BENCH_ONLY).
func renderBounds(rows map[string]*benchRow, cost signCost, clients int) string {
	var sb strings.Builder
	ratio := func(a, b *benchRow) float64 { return a.rate() / b.rate() }
	transitRSA, dkimRSA := rows["transit-rsa"], rows["dkim-rsa"]
	light := lightestPluginRequest(rows)
	if light != nil && transitRSA != nil && dkimRSA != nil {
		base := transitRSA.cpuPerRequest()
		allowed := time.Duration(float64(base)/dkimRSA.target) - base
		lightCPU := light.cpu.plugin / time.Duration(light.cpuRequests)
		verdict := "less than the plugin process alone spends on the lightest request it answers"
		if allowed >= 2*lightCPU {
			verdict = "more than the plugin process spends on two of the lightest requests it answers, so within reach"
		}
		fmt.Fprintf(&sb, "- A transit rsa-2048 sign costs %s of CPU (the rsa-2048 arithmetic alone, measured in the test process, %s). "+
			"The %.1f× target lets a DKIM sign, which does the same arithmetic, cost %s more; "+
			"that is %s (%s, %s of plugin CPU), before Vault's side of the channel is counted, "+
			"and Vault sends every write to a plugin twice (the existence check, then the request). Measured: %.2f×.\n",
			ms(base), ms(cost.rsa2048), dkimRSA.target, ms(allowed), verdict, light.name, ms(lightCPU), ratio(dkimRSA, transitRSA))
	}
	transitEd, batch, refused := rows["transit-ed"], rows["batch-ed"], rows["batch-refused"]
	if transitEd != nil && batch != nil && refused != nil {
		per := func(r *benchRow, d time.Duration) time.Duration { return d / time.Duration(r.cpuRequests) }
		outside := per(batch, batch.cpu.vault+batch.cpu.client)
		plugin := per(refused, refused.cpu.plugin)
		math := time.Duration(benchBatchSize) * cost.ed25519
		best := float64(benchBatchSize) * float64(transitEd.cpuPerRequest()) / float64(outside+plugin+math)
		verdict := "out of reach here, however fast the signer"
		if best >= batch.target {
			verdict = "reachable only by a signer whose canonicalization, hashing and formatting cost next to nothing beside the Ed25519 arithmetic"
		}
		fmt.Fprintf(&sb, "- Outside the plugin, a batch of 100 signed messages costs Vault and the clients %s of CPU (carrying, auditing and decoding "+
			"100 messages and 100 answers, each with the fields of a single sign's); inside, the plugin spends %s on the same batch when it refuses every item before signing "+
			"(the request, carried twice over the channel, decoded and answered), and 100 Ed25519 signatures take %s more at the least "+
			"(%s each, measured in the test process). So a batch signs at best %.2f× transit ed25519's single-sign rate "+
			"(%s of CPU a request), against the %.0f× target: %s. Measured: %.2f×.\n",
			ms(outside), ms(plugin), ms(math), durText(cost.ed25519), best, ms(transitEd.cpuPerRequest()),
			batch.target, verdict, ratio(batch, transitEd))
	}
	if sb.Len() == 0 {
		return ""
	}
	return "\nWhat the targets not met would take, from this run's CPU per request (Vault, plugin and clients together; " +
		fmt.Sprintf("%d clients on %d cores keep every core busy, so rates follow CPU):\n\n", clients, runtime.NumCPU()) + sb.String()
}

// lightestPluginRequest is the plugin read that costs the plugin process
// least CPU: what any request through the channel costs it at the least.
func lightestPluginRequest(rows map[string]*benchRow) *benchRow {
	var best *benchRow
	for _, key := range []string{"floor", "smtp", "apikey"} {
		r := rows[key]
		if r == nil || r.cpuRequests == 0 {
			continue
		}
		if best == nil || r.cpu.plugin/time.Duration(r.cpuRequests) < best.cpu.plugin/time.Duration(best.cpuRequests) {
			best = r
		}
	}
	return best
}

func durText(d time.Duration) string {
	return strconv.FormatFloat(float64(d)/float64(time.Microsecond), 'f', 1, 64) + " µs"
}
