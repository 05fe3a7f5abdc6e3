package auditlog

import (
	"bufio"
	"bytes"
	"io"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// genLog writes about size bytes of a realistic audit log to w: for each
// request of the mount a request and a response entry (as Vault writes
// them, ~1.3 KB each), entries of other paths between them, thousands of
// callers, sources and tenants, failures, and a few requests that never get
// a response. It returns the number of lines.
func genLog(w io.Writer, size int64) (lines int64, err error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	pad := strings.Repeat("ab", 200)
	var written int64
	buf := make([]byte, 0, 4096)
	start := t0.Add(-48 * time.Hour)
	for i := 0; written < size; i++ {
		// 400 ms apart: 200 MB span about 12 hours, off-hours included.
		ts := start.Add(time.Duration(i) * 400 * time.Millisecond).Format(time.RFC3339Nano)
		id := "req-" + strconv.Itoa(i)
		tenant := "tenant-" + strconv.Itoa(i%5000)
		mount := `","mount_point":"penguinmails/","mount_type":"vault-plugin-penguinmails`
		path := [...]string{"smtp/", "ssh/", "dkim/", "api-keys/", "oauth/"}[i%5] + tenant + "/name-" + strconv.Itoa(i%37)
		if i%3 == 0 {
			path = "sys/internal/ui/mounts/" + strconv.Itoa(i) // another path: pre-filtered
			mount = `","mount_type":"system`
		} else {
			path = "penguinmails/" + path
		}
		caller := "approle-" + strconv.Itoa(i%20000)
		ip := "10." + strconv.Itoa(i%7) + "." + strconv.Itoa((i/7)%250) + "." + strconv.Itoa(i%13)
		errField := ""
		if i%17 == 0 {
			errField = `"error":"1 error occurred:\n\t* permission denied\n\n",`
		}
		for _, typ := range []string{"request", "response"} {
			if typ == "response" && i%101 == 0 {
				continue // never answered
			}
			buf = buf[:0]
			buf = append(buf, `{"auth":{"accessor":"hmac-sha256:`...)
			buf = append(buf, caller...)
			buf = append(buf, `","client_token":"hmac-sha256:f1e7d55eef053bee116b286befa2e3cfe4c5e691e8068aea288f8cae5fa81ee6","display_name":"`...)
			buf = append(buf, caller...)
			buf = append(buf, `","metadata":{"role_name":"worker","tenant_id":"`...)
			buf = append(buf, tenant...)
			buf = append(buf, `"},"policies":["default","penguinmails-tenant"],"token_type":"service"},`...)
			if typ == "response" {
				buf = append(buf, errField...)
			}
			buf = append(buf, `"request":{"client_token_accessor":"hmac-sha256:05f8","headers":{"user-agent":["Go-http-client/1.1"]},"id":"`...)
			buf = append(buf, id...)
			buf = append(buf, mount...)
			buf = append(buf, `","namespace":{"id":"root"},"operation":"read","path":"`...)
			buf = append(buf, path...)
			buf = append(buf, `","remote_address":"`...)
			buf = append(buf, ip...)
			buf = append(buf, `","remote_port":59878},`...)
			if typ == "response" {
				buf = append(buf, `"response":{"data":{"password":"hmac-sha256:`...)
				buf = append(buf, pad...)
				buf = append(buf, `","username":"hmac-sha256:4133c0e11eab7c64aa996a54b0d58f1ccccd7f6a0d0179511e66b6d105a7f987","version":3},"mount_point":"penguinmails/"},`...)
			}
			buf = append(buf, `"time":"`...)
			buf = append(buf, ts...)
			buf = append(buf, `","type":"`...)
			buf = append(buf, typ...)
			buf = append(buf, "\"}\n"...)
			n, err := bw.Write(buf)
			written += int64(n)
			lines++
			if err != nil {
				return lines, err
			}
		}
	}
	return lines, bw.Flush()
}

// heapSampler is a Sink that samples the live heap every n records.
type heapSampler struct {
	n, seen int
	peak    uint64
	records int
	alerts  int
}

func (h *heapSampler) sample() {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	h.peak = max(h.peak, m.HeapAlloc)
}

func (h *heapSampler) Record(*Record) error {
	h.records++
	if h.seen++; h.seen%h.n == 0 {
		h.sample()
	}
	return nil
}

func (h *heapSampler) Alert(*Alert) error { h.alerts++; return nil }

func TestMemoryStaysFlatOnALargeLog(t *testing.T) {
	size := int64(200 << 20)
	if raceEnabled || testing.Short() {
		size = 16 << 20 // the race detector makes each line ~10x slower
	}
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	pr, pw := io.Pipe()
	var lines int64
	go func() {
		var err error
		lines, err = genLog(pw, size)
		pw.CloseWithError(err)
	}()
	h := &heapSampler{n: 20000}
	p := NewProcessor(Options{Rules: DefaultRuleConfig()}, h)
	start := time.Now()
	if err := p.Read(pr); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	h.sample()
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)

	growth := int64(h.peak) - int64(before.HeapAlloc)
	retained := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d lines, %.0f MB in %s (%.0f lines/s, %.0f MB/s); %d records, %d alerts, %d unanswered; heap: before %.1f MB, peak +%.1f MB, retained +%.1f MB",
		p.Stats.Lines.Load(), float64(p.Stats.Bytes.Load())/(1<<20), took.Round(time.Millisecond),
		float64(p.Stats.Lines.Load())/took.Seconds(), float64(p.Stats.Bytes.Load())/(1<<20)/took.Seconds(),
		h.records, h.alerts, p.Stats.Unanswered, float64(before.HeapAlloc)/(1<<20), float64(growth)/(1<<20), float64(retained)/(1<<20))
	if p.Stats.Bytes.Load() < size || p.Stats.Lines.Load() != lines {
		t.Fatalf("read %d bytes, %d lines; generated %d lines of at least %d bytes", p.Stats.Bytes.Load(), p.Stats.Lines.Load(), lines, size)
	}
	if h.records == 0 || p.Stats.Unanswered == 0 || p.Stats.Malformed != 0 {
		t.Fatalf("records %d, unanswered %d, malformed %d: the generated log was not read as intended", h.records, p.Stats.Unanswered, p.Stats.Malformed)
	}
	if growth > 50<<20 {
		t.Fatalf("heap grew by %d MB while streaming %d MB; want under 50 MB", growth>>20, size>>20)
	}
	if retained > 20<<20 {
		t.Fatalf("%d MB still live after the run; want under 20 MB", retained>>20)
	}
}

// BenchmarkAuditLines measures throughput on a realistic log (two thirds of
// the lines are of the mount); reported as lines/s and MB/s.
func BenchmarkAuditLines(b *testing.B) {
	pr, pw := io.Pipe()
	go func() {
		_, err := genLog(pw, 32<<20)
		pw.CloseWithError(err)
	}()
	block, err := io.ReadAll(pr)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(block)))
	b.ReportAllocs()
	b.ResetTimer()
	var lines int64
	for i := 0; i < b.N; i++ {
		p := NewProcessor(Options{Rules: DefaultRuleConfig()}, discard{})
		if err := p.Read(bytes.NewReader(block)); err != nil {
			b.Fatal(err)
		}
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
		lines += p.Stats.Lines.Load()
	}
	b.ReportMetric(float64(lines)/b.Elapsed().Seconds(), "lines/s")
}

type discard struct{}

func (discard) Record(*Record) error { return nil }
func (discard) Alert(*Alert) error   { return nil }
