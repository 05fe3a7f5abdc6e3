package auditlog

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Options configure a Processor.
type Options struct {
	// Mount is the plugin's mount path; entries whose request path does not
	// start with it are skipped. Default "penguinmails/".
	Mount  string
	Filter Filter
	Rules  RuleConfig
	// AlertsOnly prints alerts and no access records.
	AlertsOnly bool
	// MaxLine bounds one line (DefaultMaxLine when 0).
	MaxLine int
	// ResponseWait is how long, in log time, a request entry waits for its
	// response before it is reported with status no_response.
	ResponseWait time.Duration
	// MaxPending bounds the request entries waiting for their response.
	MaxPending int
}

// Defaults of Options.
const (
	DefaultMount        = "penguinmails/"
	DefaultResponseWait = 2 * time.Minute
	DefaultMaxPending   = 10000
	sweepEveryNLines    = 4096
)

// Sink receives the processor's output, in order.
type Sink interface {
	Record(*Record) error
	Alert(*Alert) error
}

// Stats counts what a Processor saw. Lines and Bytes are updated atomically
// so that a progress display may read them while Read runs.
type Stats struct {
	Lines, Bytes atomic.Int64
	// Malformed lines: not JSON, not an audit entry, a bad time, or longer
	// than MaxLine. Only lines that mention the mount are decoded, so a
	// malformed line of another mount goes uncounted.
	Malformed    int64
	MountEntries int64 // request and response entries of the mount
	Records      int64 // records printed
	Unanswered   int64 // request entries reported as no_response
	Alerts       map[string]int64
	// RuleKeysEvicted counts sources or callers a window rule forgot while
	// still active, because it tracked MaxKeys of them.
	RuleKeysEvicted int
}

// Processor turns audit lines into records and alerts.
//
// A request is reported from its response entry: Vault writes one entry
// before the request runs and one after, and the response entry repeats the
// whole request and adds the outcome (error). A request entry waits, by
// request id, for its response; one still unanswered ResponseWait later in
// log time, or at the end of the input, is reported with status
// no_response (Vault stopped, or the log was cut), after the records that
// followed it.
type Processor struct {
	opts    Options
	sink    Sink
	rules   *rules
	needle  []byte
	pending map[string]*Record
	latest  time.Time
	Stats   Stats
}

// NewProcessor returns a processor writing to sink.
func NewProcessor(opts Options, sink Sink) *Processor {
	if opts.Mount == "" {
		opts.Mount = DefaultMount
	}
	opts.Mount = strings.TrimPrefix(strings.TrimSuffix(opts.Mount, "/"), "/") + "/"
	if opts.ResponseWait <= 0 {
		opts.ResponseWait = DefaultResponseWait
	}
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
	}
	p := &Processor{
		opts: opts, sink: sink, rules: newRules(opts.Rules),
		needle:  []byte(`"` + opts.Mount),
		pending: map[string]*Record{},
	}
	p.Stats.Alerts = map[string]int64{}
	return p
}

// Read processes one input (plain or gzipped JSON lines) to its end. It
// may be called for several inputs in turn; Close ends the run.
func (p *Processor) Read(r io.Reader) error {
	dr, err := decompressed(r)
	if err != nil {
		return err
	}
	lr := newLineReader(dr, p.opts.MaxLine, &p.Stats.Bytes)
	defer func() { p.Stats.Malformed += int64(lr.TooLong) }()
	for {
		line, err := lr.next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p.Stats.Lines.Add(1)
		if p.Stats.Lines.Load()%sweepEveryNLines == 0 {
			if err := p.sweep(false); err != nil {
				return err
			}
		}
		if err := p.line(line); err != nil {
			return err
		}
	}
}

// line handles one line.
func (p *Processor) line(line []byte) error {
	line = bytes.TrimSpace(line)
	// Cheap pre-filter: a line of the mount has `"penguinmails/` in it (its
	// request path); other lines are not decoded at all.
	if len(line) == 0 || !bytes.Contains(line, p.needle) {
		return nil
	}
	e, err := parseLine(line)
	if err != nil {
		p.Stats.Malformed++
		return nil
	}
	r, ok, err := recordOf(e, p.opts.Mount)
	if err != nil {
		p.Stats.Malformed++
		return nil
	}
	if !ok {
		return nil
	}
	p.Stats.MountEntries++
	if r.Timestamp.After(p.latest) {
		p.latest = r.Timestamp
	}
	if !p.opts.Filter.inRange(r.Timestamp) {
		return nil
	}
	if e.Type == "request" && r.RequestID != "" {
		p.pending[r.RequestID] = r
		if len(p.pending) > p.opts.MaxPending {
			return p.sweep(false)
		}
		return nil
	}
	if req, ok := p.pending[r.RequestID]; ok {
		r.completeFrom(req)
		delete(p.pending, r.RequestID)
	}
	return p.emit(r)
}

// emit runs the rules on r and writes r and its alerts if the filters
// select r. The rules see every record in the time range, so that a burst
// spread over tenants or types is still seen.
func (p *Processor) emit(r *Record) error {
	alerts := p.rules.check(r)
	if !p.opts.Filter.selects(r) {
		return nil
	}
	if !p.opts.AlertsOnly {
		p.Stats.Records++
		if err := p.sink.Record(r); err != nil {
			return err
		}
	}
	for i := range alerts {
		p.Stats.Alerts[alerts[i].Rule]++
		if err := p.sink.Alert(&alerts[i]); err != nil {
			return err
		}
	}
	return nil
}

// sweep reports the request entries that waited longer than ResponseWait
// (all of them when final), oldest first; if more than MaxPending still
// wait, the oldest beyond the bound go too.
func (p *Processor) sweep(final bool) error {
	var due []*Record
	for id, r := range p.pending {
		if final || p.latest.Sub(r.Timestamp) > p.opts.ResponseWait {
			due = append(due, r)
			delete(p.pending, id)
		}
	}
	if over := len(p.pending) - p.opts.MaxPending; over > 0 {
		rest := make([]*Record, 0, len(p.pending))
		for _, r := range p.pending {
			rest = append(rest, r)
		}
		slices.SortFunc(rest, byTime)
		for _, r := range rest[:over] {
			due = append(due, r)
			delete(p.pending, r.RequestID)
		}
	}
	slices.SortFunc(due, byTime)
	for _, r := range due {
		p.Stats.Unanswered++
		if err := p.emit(r); err != nil {
			return err
		}
	}
	return nil
}

func byTime(a, b *Record) int { return a.Timestamp.Compare(b.Timestamp) }

// Close reports the requests still waiting for a response; call it once
// after the last Read.
func (p *Processor) Close() error {
	err := p.sweep(true)
	p.Stats.RuleKeysEvicted = p.rules.failures.Evicted + p.rules.reads.Evicted
	return err
}
