package auditlog

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Rule names, as --rules takes them and alerts carry them.
const (
	RuleFailedRequests  = "failed_requests"
	RuleBulkReads       = "bulk_reads"
	RuleOffHours        = "off_hours_read"
	RulePrivateExport   = "private_key_export"
	RuleDeletion        = "deletion"
	RuleNoIncident      = "rotation_without_incident"
	RuleCrossTenant     = "cross_tenant"
	defaultMaxRuleKeys  = 20000
	evictEveryNObserved = 4096
)

// AllRules lists every rule, in the order they are checked.
var AllRules = []string{RuleFailedRequests, RuleBulkReads, RuleOffHours, RulePrivateExport, RuleDeletion, RuleNoIncident, RuleCrossTenant}

// Alert is one suspicious-activity finding, tied to the record that
// triggered it.
type Alert struct {
	Rule     string `json:"rule"`
	Severity string `json:"severity"`
	Detail   string `json:"detail"`
	Record   *Record
}

// RuleConfig configures the rules; DefaultRuleConfig gives the documented
// thresholds.
type RuleConfig struct {
	Enabled map[string]bool
	// FailThreshold or more failed requests from one source address within
	// FailWindow.
	FailThreshold int
	FailWindow    time.Duration
	// More than ReadThreshold secret reads by one caller within ReadWindow.
	ReadThreshold int
	ReadWindow    time.Duration
	// OffHours is the UTC window in which a secret read is flagged.
	OffHours OffHours
	// MaxKeys bounds the sources and callers each window rule tracks.
	MaxKeys int
}

// DefaultRuleConfig: the thresholds of the feature document (5 failures in
// 5 minutes, more than 100 reads in a minute, 22:00-06:00 UTC).
func DefaultRuleConfig() RuleConfig {
	enabled := map[string]bool{}
	for _, r := range AllRules {
		enabled[r] = true
	}
	return RuleConfig{
		Enabled:       enabled,
		FailThreshold: 5, FailWindow: 5 * time.Minute,
		ReadThreshold: 100, ReadWindow: time.Minute,
		OffHours: OffHours{Start: 22 * 60, End: 6 * 60, Set: true},
		MaxKeys:  defaultMaxRuleKeys,
	}
}

// ParseRules turns "all", "none" or a comma-separated list of rule names
// into the enabled set.
func ParseRules(s string) (map[string]bool, error) {
	enabled := map[string]bool{}
	switch s = strings.TrimSpace(s); s {
	case "all":
		for _, r := range AllRules {
			enabled[r] = true
		}
		return enabled, nil
	case "none", "":
		return enabled, nil
	}
	known := map[string]bool{}
	for _, r := range AllRules {
		known[r] = true
	}
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if !known[name] {
			return nil, fmt.Errorf("unknown rule %q: rules are all, none or a list of %s", name, strings.Join(AllRules, ", "))
		}
		enabled[name] = true
	}
	return enabled, nil
}

// OffHours is a daily window in minutes after midnight UTC; Start > End
// wraps around midnight (22:00-06:00).
type OffHours struct {
	Start, End int
	Set        bool
}

// ParseOffHours reads "HH:MM-HH:MM" (UTC); "off" disables the window.
func ParseOffHours(s string) (OffHours, error) {
	if s == "off" || s == "" {
		return OffHours{}, nil
	}
	from, to, ok := strings.Cut(s, "-")
	if !ok {
		return OffHours{}, fmt.Errorf("invalid off-hours %q: expected HH:MM-HH:MM in UTC, or off", s)
	}
	start, err := parseClock(from)
	if err != nil {
		return OffHours{}, err
	}
	end, err := parseClock(to)
	if err != nil {
		return OffHours{}, err
	}
	if start == end {
		return OffHours{}, fmt.Errorf("invalid off-hours %q: start and end are the same time", s)
	}
	return OffHours{Start: start, End: end, Set: true}, nil
}

func parseClock(s string) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hour, herr := strconv.Atoi(h)
	minute, merr := strconv.Atoi(m)
	if !ok || herr != nil || merr != nil || hour < 0 || hour > 24 || minute < 0 || minute > 59 || hour*60+minute > 24*60 {
		return 0, fmt.Errorf("invalid time of day %q: expected HH:MM between 00:00 and 24:00", s)
	}
	return hour*60 + minute, nil
}

// contains reports whether t (taken in UTC) falls in the window.
func (o OffHours) contains(t time.Time) bool {
	if !o.Set {
		return false
	}
	t = t.UTC()
	m := t.Hour()*60 + t.Minute()
	if o.Start < o.End {
		return m >= o.Start && m < o.End
	}
	return m >= o.Start || m < o.End
}

func (o OffHours) String() string {
	if !o.Set {
		return "off"
	}
	return fmt.Sprintf("%02d:%02d-%02d:%02d", o.Start/60, o.Start%60, o.End/60, o.End%60)
}

// rules holds the state of the window rules between records.
type rules struct {
	cfg      RuleConfig
	failures *windowCounter
	reads    *windowCounter
}

func newRules(cfg RuleConfig) *rules {
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = defaultMaxRuleKeys
	}
	return &rules{
		cfg:      cfg,
		failures: newWindowCounter(cfg.FailThreshold, cfg.FailWindow, cfg.MaxKeys),
		reads:    newWindowCounter(cfg.ReadThreshold+1, cfg.ReadWindow, cfg.MaxKeys),
	}
}

// check runs every enabled rule on r and returns the alerts it raises.
// Records should come in time order; the window rules tolerate small
// disorder (they compare the newest and oldest times they hold).
func (rs *rules) check(r *Record) []Alert {
	var out []Alert
	add := func(rule, severity, format string, args ...any) {
		if rs.cfg.Enabled[rule] {
			out = append(out, Alert{Rule: rule, Severity: severity, Detail: fmt.Sprintf(format, args...), Record: r})
		}
	}
	if rs.cfg.Enabled[RuleFailedRequests] && r.Status == StatusError {
		if n, hit := rs.failures.observe(sourceKey(r), r.Timestamp); hit {
			add(RuleFailedRequests, "high", "%d failed requests from %s within %s", n, sourceKey(r), rs.cfg.FailWindow)
		}
	}
	if isSecretRead(r) {
		if rs.cfg.Enabled[RuleBulkReads] {
			if n, hit := rs.reads.observe(callerKey(r), r.Timestamp); hit {
				add(RuleBulkReads, "high", "%d secret reads by %s within %s (more than %d)", n, callerKey(r), rs.cfg.ReadWindow, rs.cfg.ReadThreshold)
			}
		}
		if rs.cfg.OffHours.contains(r.Timestamp) {
			add(RuleOffHours, "medium", "secret read at %s UTC, inside the off-hours window %s", r.Timestamp.Format("15:04"), rs.cfg.OffHours)
		}
	}
	if isPrivateExport(r) {
		add(RulePrivateExport, "high", "private key export (%s)", r.Status)
	}
	if r.Operation == "delete" {
		add(RuleDeletion, "medium", "deletion (%s)", r.Status)
	}
	if r.missingIncident {
		add(RuleNoIncident, "medium", "%s without an incident_id (%s)", strings.Join(r.rel, "/"), r.Status)
	}
	if r.PathTenant != "" {
		add(RuleCrossTenant, "high", "caller of tenant %s on a path of tenant %s (%s)", r.TenantID, r.PathTenant, r.Status)
	}
	return out
}

// isSecretRead: a read of a secret itself ({type}/{tenant}/{name}), or an
// export of its private key. Lists, history, status and DNS views are not.
func isSecretRead(r *Record) bool {
	if isPrivateExport(r) {
		return true
	}
	return r.Operation == "read" && len(r.rel) == 3 && !nonSecretPrefixes[r.rel[0]]
}

// isPrivateExport: {type}/{tenant}/{name}/private (SSH and DKIM keys).
func isPrivateExport(r *Record) bool {
	return len(r.rel) == 4 && r.rel[3] == "private" && !nonSecretPrefixes[r.rel[0]]
}

func sourceKey(r *Record) string {
	if r.SourceIP == "" {
		return "unknown source"
	}
	return r.SourceIP
}

// callerKey identifies the caller: its entity when it has one, else its
// token (the accessor, HMAC'd or not, is stable per token), else its name.
func callerKey(r *Record) string {
	switch {
	case r.EntityID != "":
		return "entity " + r.EntityID
	case r.TokenAccessor != "":
		return "token " + r.Accessor + " (" + r.TokenAccessor + ")"
	default:
		return r.Accessor
	}
}

// windowCounter detects n events of one key within a span. Each key keeps
// at most n timestamps; keys idle longer than the span are evicted, and at
// most maxKeys are kept, so memory is bounded whatever the input.
type windowCounter struct {
	n        int
	span     time.Duration
	maxKeys  int
	keys     map[string]*window
	observed int
	Evicted  int // keys dropped for the maxKeys bound while still active
}

type window struct {
	times      []int64 // ring of the last n event times, unix nanoseconds
	next       int
	newest     int64
	quietUntil int64 // no new alert for this key before this time
}

func newWindowCounter(n int, span time.Duration, maxKeys int) *windowCounter {
	if n < 1 {
		n = 1
	}
	return &windowCounter{n: n, span: span, maxKeys: maxKeys, keys: map[string]*window{}}
}

// observe records an event of key at t. It reports a hit when the key's
// last n events fall within the span; after a hit the key stays quiet for
// one span, so one burst raises one alert, not one per further event.
func (c *windowCounter) observe(key string, t time.Time) (int, bool) {
	now := t.UnixNano()
	c.observed++
	if c.observed%evictEveryNObserved == 0 || len(c.keys) >= c.maxKeys {
		c.evict(now)
	}
	w := c.keys[key]
	if w == nil {
		w = &window{}
		c.keys[key] = w
	}
	if len(w.times) < c.n {
		w.times = append(w.times, now)
	} else {
		w.times[w.next] = now
		w.next = (w.next + 1) % c.n
	}
	w.newest = max(w.newest, now)
	if len(w.times) < c.n || now < w.quietUntil {
		return len(w.times), false
	}
	oldest := w.times[w.next] // the full ring's next slot to overwrite
	if now-oldest > int64(c.span) {
		return len(w.times), false
	}
	w.quietUntil = now + int64(c.span)
	return c.n, true
}

// evict drops the keys whose newest event is older than the span (they can
// no longer reach n) and, if still at maxKeys, others (map order, so
// arbitrary ones) down to 90% of maxKeys: a full scan then frees room for
// many more keys, which keeps the cost per event constant.
func (c *windowCounter) evict(now int64) {
	for k, w := range c.keys {
		if now-w.newest > int64(c.span) && now >= w.quietUntil {
			delete(c.keys, k)
		}
	}
	if len(c.keys) < c.maxKeys {
		return
	}
	keep := c.maxKeys * 9 / 10
	for k := range c.keys {
		if len(c.keys) <= keep {
			break
		}
		delete(c.keys, k)
		c.Evicted++
	}
}
