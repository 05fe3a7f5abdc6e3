package auditlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// entry describes one audit line in Vault's JSON shape (the fields a real
// Vault 1.21 file device writes, see testdata/), for tests to build logs.
type entry struct {
	Type        string // request or response (default response)
	Time        time.Time
	Op          string // default read
	Path        string // below the mount
	Mount       string // default penguinmails/
	IP          string // default 10.0.1.50
	Display     string // default approle
	Entity      string
	Tenant      string // auth.metadata.tenant_id
	Error       string
	ID          string
	Data        map[string]any
	Warnings    []string
	NoAuth      bool
	ExtraRespKB int // pads response.data, to make realistic line sizes
}

var t0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

var idSeq int

func (e entry) line() []byte {
	if e.Type == "" {
		e.Type = "response"
	}
	if e.Op == "" {
		e.Op = "read"
	}
	if e.Mount == "" {
		e.Mount = DefaultMount
	}
	if e.IP == "" {
		e.IP = "10.0.1.50"
	}
	if e.Display == "" {
		e.Display = "approle"
	}
	if e.ID == "" {
		idSeq++
		e.ID = fmt.Sprintf("req-%d", idSeq)
	}
	if e.Time.IsZero() {
		e.Time = t0
	}
	req := map[string]any{
		"id": e.ID, "operation": e.Op, "path": e.Mount + e.Path, "remote_address": e.IP, "remote_port": 51234,
		"client_token": "hmac-sha256:aa", "client_token_accessor": "hmac-sha256:acc-" + e.Display,
		"mount_point": e.Mount, "mount_type": "vault-plugin-penguinmails", "mount_class": "secret",
		"namespace": map[string]any{"id": "root"}, "headers": map[string]any{"user-agent": []string{"Go-http-client/1.1"}},
	}
	if e.Data != nil {
		req["data"] = e.Data
	}
	m := map[string]any{"time": e.Time.Format(time.RFC3339Nano), "type": e.Type, "request": req}
	if !e.NoAuth {
		auth := map[string]any{
			"accessor": "hmac-sha256:acc-" + e.Display, "client_token": "hmac-sha256:aa", "display_name": e.Display,
			"policies": []string{"default", "penguinmails-operator"}, "token_type": "service",
		}
		if e.Entity != "" {
			auth["entity_id"] = e.Entity
		}
		if e.Tenant != "" {
			auth["metadata"] = map[string]string{"tenant_id": e.Tenant, "role_name": "worker"}
		}
		m["auth"] = auth
	}
	if e.Error != "" {
		m["error"] = e.Error
	}
	if e.Type == "response" {
		resp := map[string]any{"mount_point": e.Mount, "mount_type": "vault-plugin-penguinmails"}
		if e.Warnings != nil {
			resp["warnings"] = e.Warnings
		}
		if e.ExtraRespKB > 0 {
			resp["data"] = map[string]any{"pad": "hmac-sha256:" + strings.Repeat("ab", e.ExtraRespKB*512)}
		}
		m["response"] = resp
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// logOf joins the entries' lines.
func logOf(entries ...entry) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		b.Write(e.line())
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// collector is a Sink that keeps everything.
type collector struct {
	records []*Record
	alerts  []Alert
}

func (c *collector) Record(r *Record) error { c.records = append(c.records, r); return nil }
func (c *collector) Alert(a *Alert) error   { c.alerts = append(c.alerts, *a); return nil }

func (c *collector) alertsOf(rule string) []Alert {
	var out []Alert
	for _, a := range c.alerts {
		if a.Rule == rule {
			out = append(out, a)
		}
	}
	return out
}

// process runs log through a processor with opts (rules all on, default
// thresholds, unless opts sets them) and returns what came out.
func process(t *testing.T, opts Options, log []byte) (*collector, *Processor) {
	t.Helper()
	if opts.Rules.Enabled == nil {
		opts.Rules = DefaultRuleConfig()
	}
	c := &collector{}
	p := NewProcessor(opts, c)
	if err := p.Read(bytes.NewReader(log)); err != nil {
		t.Fatalf("Read: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return c, p
}

// at is t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }
