package integration

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// runParallelRate runs op from 8×GOMAXPROCS goroutines and reports the rate
// in unit. A request to Vault mostly waits on the loopback and the plugin's
// gRPC hop, so several in flight measure throughput rather than one
// request's latency; a baseline gets the same goroutines. B/op and allocs/op
// count this test process only, not the Vault server.
func runParallelRate(b *testing.B, unit string, op func() error) {
	b.ReportAllocs()
	b.SetParallelism(8)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := op(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}

// benchSMTPFields is the credential both engines store in the benchmarks.
var benchSMTPFields = map[string]interface{}{
	"username": "bench@example.com", "password": "bench-Password-0123456789",
	"host": "smtp.example.com", "port": 587, "encryption": "starttls",
}

// enableOnce enables a secrets engine at path unless something is mounted
// there already (the benchmarks share one Vault and may run again).
func enableOnce(tb testing.TB, path string, args ...string) {
	tb.Helper()
	mounts, err := client.Sys().ListMounts()
	if err != nil {
		tb.Fatal(err)
	}
	if mounts[path+"/"] != nil {
		return
	}
	if out, err := runVault(append([]string{"secrets", "enable", "-path=" + path}, args...)...); err != nil {
		tb.Fatalf("enable %s at %s: %v\n%s", args[len(args)-1], path, err, out)
	}
}

// kvBaselineMount enables KV v2 in the same Vault, as the baseline every
// engine benchmark is compared with.
func kvBaselineMount(b testing.TB) string {
	b.Helper()
	const kv = "kvbench"
	enableOnce(b, kv, "-version=2", "kv")
	// KV v2 upgrades its storage in the background after mounting; poll
	// until a write is accepted.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := client.Logical().Write(kv+"/data/warmup", map[string]interface{}{"data": map[string]interface{}{"ok": true}})
		if err == nil {
			return kv
		}
		if time.Now().After(deadline) {
			b.Fatalf("kv-v2 not writable: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// BenchmarkSecretRead compares reading an SMTP credential (five versions
// kept, rotation metadata computed) with reading the same fields from KV v2
// in the same Vault and run, and with the plugin's floor (a path that reads
// no storage).
func BenchmarkSecretRead(b *testing.B) {
	kv := kvBaselineMount(b)
	l := client.Logical()
	kvPath := kv + "/data/smtp/tenant-bench/mail-1"
	if _, err := l.Write(kvPath, map[string]interface{}{"data": benchSMTPFields}); err != nil {
		b.Fatal(err)
	}
	pmPath := mount + "/smtp/tenant-bench/mail-1"
	if _, err := l.Write(pmPath, benchSMTPFields); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = l.Delete(pmPath) })
	for i := 0; i < 4; i++ {
		if _, err := l.Write(pmPath+"/rotate", map[string]interface{}{"reason": "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	read := func(path string) func() error {
		return func() error {
			s, err := l.Read(path)
			if err == nil && s == nil {
				err = fmt.Errorf("%s: no secret", path)
			}
			return err
		}
	}
	b.Run("kv-v2", func(b *testing.B) { runParallelRate(b, "reads/s", read(kvPath)) })
	// The plugin's floor: config is served from the backend's cache, so this
	// is the HTTP layer plus the gRPC hop to the plugin, with no storage read.
	b.Run("penguinmails-config", func(b *testing.B) { runParallelRate(b, "reads/s", read(mount+"/config")) })
	b.Run("penguinmails-smtp", func(b *testing.B) { runParallelRate(b, "reads/s", read(pmPath)) })
}

// BenchmarkSecretWrite compares a rotation (new generated password, new
// version, history entry, one storage write) with writing a new version of
// the same fields to KV v2. Writes go round-robin over benchWriteSecrets
// secrets, as a tenant-wide rotation would; one secret would only measure
// its lock.
func BenchmarkSecretWrite(b *testing.B) {
	kv := kvBaselineMount(b)
	l := client.Logical()
	var kvPaths, pmPaths []string
	for i := 0; i < benchWriteSecrets; i++ {
		kvPaths = append(kvPaths, fmt.Sprintf("%s/data/smtp/tenant-bench/mail-w%d", kv, i))
		pm := fmt.Sprintf("%s/smtp/tenant-bench/mail-w%d", mount, i)
		if _, err := l.Write(pm, benchSMTPFields); err != nil {
			b.Fatal(err)
		}
		pmPaths = append(pmPaths, pm+"/rotate")
	}
	b.Cleanup(func() {
		for _, p := range pmPaths {
			_, _ = l.Delete(strings.TrimSuffix(p, "/rotate"))
		}
	})
	b.Run("kv-v2", func(b *testing.B) {
		runParallelRate(b, "writes/s", roundRobin(kvPaths, func(p string) error {
			_, err := l.Write(p, map[string]interface{}{"data": benchSMTPFields})
			return err
		}))
	})
	b.Run("penguinmails-rotate", func(b *testing.B) {
		runParallelRate(b, "writes/s", roundRobin(pmPaths, func(p string) error {
			_, err := l.Write(p, map[string]interface{}{"reason": "bench"})
			return err
		}))
	})
}

const benchWriteSecrets = 16

// roundRobin calls op on each path in turn, safely from many goroutines.
func roundRobin(paths []string, op func(string) error) func() error {
	var n atomic.Uint64
	return func() error { return op(paths[n.Add(1)%uint64(len(paths))]) }
}
