package auditlog

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"io"
	"strings"
	"time"
)

// Output types: an access record, or an alert about one.
const (
	TypeAccess = "access"
	TypeAlert  = "alert"
)

// JSONWriter writes one JSON object a line: {"type":"access",...record} or
// {"type":"alert","rule":...,"severity":...,"detail":...,...record}.
type JSONWriter struct {
	w   *bufio.Writer
	enc *json.Encoder
}

// NewJSONWriter writes to w; call Flush at the end.
func NewJSONWriter(w io.Writer) *JSONWriter {
	bw := bufio.NewWriterSize(w, 64<<10)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &JSONWriter{w: bw, enc: enc}
}

func (j *JSONWriter) Record(r *Record) error {
	return j.enc.Encode(struct {
		Type string `json:"type"`
		*Record
	}{TypeAccess, r})
}

func (j *JSONWriter) Alert(a *Alert) error {
	return j.enc.Encode(struct {
		Type     string `json:"type"`
		Rule     string `json:"rule"`
		Severity string `json:"severity"`
		Detail   string `json:"detail"`
		*Record
	}{TypeAlert, a.Rule, a.Severity, a.Detail, a.Record})
}

func (j *JSONWriter) Flush() error { return j.w.Flush() }

// CSVHeader names the columns CSVWriter writes; alert columns are empty on
// access rows.
var CSVHeader = []string{"type", "timestamp", "operation", "path", "accessor", "tenant_id", "path_tenant",
	"source_ip", "secret_type", "status", "error", "entity_id", "request_id", "rule", "severity", "detail"}

// CSVWriter writes the header, then one row per record or alert.
type CSVWriter struct {
	bw     *bufio.Writer
	w      *csv.Writer
	header bool
	row    []string
}

// NewCSVWriter writes to w; call Flush at the end.
func NewCSVWriter(w io.Writer) *CSVWriter {
	bw := bufio.NewWriterSize(w, 64<<10)
	return &CSVWriter{bw: bw, w: csv.NewWriter(bw), row: make([]string, len(CSVHeader))}
}

func (c *CSVWriter) Record(r *Record) error { return c.write(TypeAccess, r, nil) }

func (c *CSVWriter) Alert(a *Alert) error { return c.write(TypeAlert, a.Record, a) }

func (c *CSVWriter) write(kind string, r *Record, a *Alert) error {
	if !c.header {
		c.header = true
		if err := c.w.Write(CSVHeader); err != nil {
			return err
		}
	}
	row := append(c.row[:0], kind, r.Timestamp.Format(time.RFC3339Nano), r.Operation, r.Path, r.Accessor,
		r.TenantID, r.PathTenant, r.SourceIP, r.SecretType, r.Status, r.Error, r.EntityID, r.RequestID)
	if a != nil {
		row = append(row, a.Rule, a.Severity, a.Detail)
	} else {
		row = append(row, "", "", "")
	}
	for i := range row {
		row[i] = defuseFormula(row[i])
	}
	return c.w.Write(row)
}

// Flush writes out what is buffered and reports a write error.
func (c *CSVWriter) Flush() error {
	if !c.header { // an empty report still says what its columns are
		c.header = true
		_ = c.w.Write(CSVHeader)
	}
	c.w.Flush()
	if err := c.w.Error(); err != nil {
		return err
	}
	return c.bw.Flush()
}

// defuseFormula keeps a spreadsheet from running a cell as a formula: a
// display name or error text is the caller's input, and a cell starting
// with = + - @ or a control character is prefixed with a quote (OWASP CSV
// injection).
func defuseFormula(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
