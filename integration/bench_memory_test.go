package integration

import (
	"debug/buildinfo"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"
)

// memoryReport is the plugin's (and Vault's) resident memory around storing
// and reading many secrets.
type memoryReport struct {
	secrets, cacheSize          int
	writeTime, readTime         time.Duration
	pluginBefore, pluginWritten uint64 // VmRSS in KiB
	pluginWarm, pluginPeak      uint64
	vaultBefore, vaultWarm      uint64
}

func (m *memoryReport) String() string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "Plugin memory with %s stored SMTP secrets (%s writes in %.0f s, %s/s; every secret then read once in %.0f s, %s/s; "+
		"the audit device off for this step), cache_size %s, so the warm cache holds at most %s entries:\n\n",
		thousands(float64(m.secrets)), thousands(float64(m.secrets)), m.writeTime.Seconds(),
		thousands(float64(m.secrets)/m.writeTime.Seconds()), m.readTime.Seconds(),
		thousands(float64(m.secrets)/m.readTime.Seconds()), thousands(float64(m.cacheSize)),
		thousands(float64(min(m.secrets, m.cacheSize))))
	sb.WriteString("| process | before writing | after writing | after reading all (cache warm) | peak (VmHWM) |\n")
	sb.WriteString("|---|---:|---:|---:|---:|\n")
	fmt.Fprintf(&sb, "| plugin | %s | %s | %s | %s |\n", mib(m.pluginBefore), mib(m.pluginWritten), mib(m.pluginWarm), mib(m.pluginPeak))
	fmt.Fprintf(&sb, "| Vault (holds the in-memory storage) | %s | | %s | |\n", mib(m.vaultBefore), mib(m.vaultWarm))
	return sb.String()
}

func mib(kib uint64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// benchMemory writes n SMTP secrets from workers goroutines, reads each
// once, which fills the decoded-entry cache up to its bound, and reports
// the plugin process's resident memory before, between and after.
func benchMemory(t *testing.T, l *api.Logical, n, workers int) *memoryReport {
	t.Helper()
	cfg, err := l.Read(mount + "/config")
	if err != nil || cfg == nil {
		t.Fatalf("read config: %v", err)
	}
	cacheSize, _ := strconv.Atoi(fmt.Sprint(cfg.Data["cache_size"]))
	pid := pluginPID(t)
	pauseAudit(t)
	m := &memoryReport{secrets: n, cacheSize: cacheSize}
	m.pluginBefore = procStatusKiB(t, pid, "VmRSS")
	m.vaultBefore = procStatusKiB(t, vaultPID, "VmRSS")

	path := func(i int) string { return fmt.Sprintf("%s/smtp/mem-%03d/mail-%06d", mount, i%100, i) }
	m.writeTime = forEach(t, n, workers, func(i int) error {
		fields := map[string]interface{}{}
		for k, v := range benchSMTPFields {
			fields[k] = v
		}
		fields["username"] = fmt.Sprintf("user-%06d@example.com", i)
		_, err := l.Write(path(i), fields)
		return err
	})
	m.pluginWritten = procStatusKiB(t, pid, "VmRSS")
	t.Logf("bench: wrote %d secrets in %s", n, m.writeTime.Round(time.Second))

	m.readTime = forEach(t, n, workers, func(i int) error {
		s, err := l.Read(path(i))
		if err == nil && (s == nil || s.Data["username"] != fmt.Sprintf("user-%06d@example.com", i)) {
			err = fmt.Errorf("read %s: not the secret written", path(i))
		}
		return err
	})
	m.pluginWarm = procStatusKiB(t, pid, "VmRSS")
	m.pluginPeak = procStatusKiB(t, pid, "VmHWM")
	m.vaultWarm = procStatusKiB(t, vaultPID, "VmRSS")
	if again := pluginPID(t); again != pid {
		t.Fatalf("the plugin process changed during the memory step (pid %d, now %d): its figures mean nothing", pid, again)
	}
	return m
}

// pauseAudit turns the file audit device off until the test ends: the
// memory step measures memory, and auditing 200,000 requests would only
// make it slower (and the audit log hundreds of MB larger).
func pauseAudit(t *testing.T) {
	t.Helper()
	if err := client.Sys().DisableAudit("file"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := enableFileAudit(auditLog); err != nil {
			t.Errorf("re-enabling the audit device: %v", err)
		}
	})
}

// forEach calls op(i) for i in [0, n) from workers goroutines and returns
// the time it took; the first error fails the test.
func forEach(t *testing.T, n, workers int, op func(int) error) time.Duration {
	t.Helper()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		firstErr atomic.Pointer[error]
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for firstErr.Load() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := op(i); err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			}
		}()
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		t.Fatal(*p)
	}
	return time.Since(start)
}

// pluginPID finds the plugin process: the child of the shared Vault
// server whose command line names the plugin. Multiplexing makes it one
// process for every mount.
func pluginPID(t *testing.T) int {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var found []int
	for _, dir := range dirs {
		pid, _ := strconv.Atoi(filepath.Base(dir))
		if parentPID(filepath.Base(dir)) != vaultPID {
			continue
		}
		cmdline, err := os.ReadFile(dir + "/cmdline")
		if err == nil && strings.Contains(string(cmdline), pluginName) {
			found = append(found, pid)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one plugin process under Vault (pid %d), found %v", vaultPID, found)
	}
	return found[0]
}

// parentPID is the parent pid of process pid, or -1 if it has gone.
func parentPID(pid string) int {
	fields, err := procStat(pid)
	if err != nil || len(fields) < 2 {
		return -1
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// procStatusKiB reads a "kB" line of /proc/PID/status, such as VmRSS.
func procStatusKiB(t *testing.T, pid int, key string) uint64 {
	t.Helper()
	path := fmt.Sprintf("/proc/%d/status", pid)
	v, err := strconv.ParseUint(strings.TrimSuffix(firstProcValue(path, key), " kB"), 10, 64)
	if err != nil {
		t.Fatalf("%s %s: %v", path, key, err)
	}
	return v
}

// machineInfo describes where the figures come from.
type machineInfo struct {
	cpu, kernel, goVersion, vaultVersion, load string
	cores                                      int
	ramKiB                                     uint64
}

func (m machineInfo) String() string {
	return fmt.Sprintf("machine: %s, %d cores, %.1f GiB RAM, Linux %s; %s; Vault %s; plugin %s; load average %s",
		m.cpu, m.cores, float64(m.ramKiB)/(1024*1024), m.kernel, m.goVersion, m.vaultVersion, pluginVersion, m.load)
}

func describeMachine(t *testing.T) machineInfo {
	t.Helper()
	m := machineInfo{cores: runtime.NumCPU(), goVersion: runtime.Version()}
	m.cpu = firstProcValue("/proc/cpuinfo", "model name")
	if ram, err := strconv.ParseUint(strings.Fields(firstProcValue("/proc/meminfo", "MemTotal") + " 0")[0], 10, 64); err == nil {
		m.ramKiB = ram
	}
	if k, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(k))
	}
	// The plugin's toolchain may differ from the test's: name both if so.
	if bi, err := buildinfo.ReadFile(pluginBin); err == nil && bi.GoVersion != m.goVersion {
		m.goVersion = fmt.Sprintf("tests built with %s, plugin with %s", m.goVersion, bi.GoVersion)
	} else {
		m.goVersion = "Go " + strings.TrimPrefix(m.goVersion, "go")
	}
	h, err := client.Sys().Health()
	if err != nil {
		t.Fatal(err)
	}
	m.vaultVersion = h.Version
	return m
}

// firstProcValue returns the value of the first "key : value" line, or
// "unknown".
func firstProcValue(path, key string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// loadAverage is the 1-minute load average, which says how busy the
// machine was around the figures.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(data))[0]
}
