package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/helper/strutil"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// configStoragePath holds the engine configuration (seal-wrapped).
const configStoragePath = "config"

const day = 24 * time.Hour

// typePolicy is the rotation policy of one secret type.
type typePolicy struct {
	RotationPeriod time.Duration `json:"rotation_period"`
	AlertThreshold time.Duration `json:"alert_threshold"`
	// GracePeriod keeps a superseded version valid after a rotation, for the
	// types that need an overlap (SSH authorized_keys, DKIM DNS records).
	GracePeriod time.Duration `json:"grace_period,omitempty"`
	// RiskLevel ranks the type in rotation/status: what a leak of it costs.
	RiskLevel string `json:"risk_level,omitempty"`
}

// Risk levels, lowest first.
var riskLevels = []string{"low", "medium", "high", "critical"}

// engineConfig is the mount-wide configuration.
type engineConfig struct {
	// Policies holds the rotation policy of each type, by type name. A type
	// missing here uses its secretKind defaults.
	Policies       map[string]typePolicy `json:"policies,omitempty"`
	MaxVersions    int                   `json:"max_versions"`
	PasswordPolicy string                `json:"password_policy"`
	// DKIMSignMaxMessageBytes bounds the decoded message of one DKIM sign:
	// one plugin process serves every mount and tenant.
	DKIMSignMaxMessageBytes int `json:"dkim_sign_max_message_bytes,omitempty"`
	// HistoryLimit and AccessLimit bound the rotation history and the
	// access records kept per secret.
	HistoryLimit int `json:"history_limit,omitempty"`
	AccessLimit  int `json:"access_limit,omitempty"`
	// JobConcurrency is how many secrets a rotation job rotates at once.
	JobConcurrency int `json:"job_concurrency,omitempty"`
	// CacheSize bounds the decoded-entry cache (cache.go); nil means
	// defaultCacheSize, 0 turns the cache off.
	CacheSize *int `json:"cache_size,omitempty"`
	// TypeSettings holds each type's own settings (secretKind.settings), by
	// type name, in the type's own encoding.
	TypeSettings map[string]json.RawMessage `json:"type_settings,omitempty"`
	// decoded is TypeSettings as each type's settings.decode made it, by
	// type name, so that a request does not decode them again. Set by
	// backend.decodeTypeSettings when the config is loaded or written; not
	// stored.
	decoded map[string]any

	// Legacy per-type fields of configs written before Policies; read once
	// and moved into Policies (migrateLegacy).
	LegacySMTP *typePolicy `json:"smtp,omitempty"`
	LegacySSH  *typePolicy `json:"ssh,omitempty"`
	LegacyDKIM *typePolicy `json:"dkim,omitempty"`
}

// Bounds of job_concurrency: one plugin process serves every mount.
const (
	defaultJobConcurrency = 4
	maxJobConcurrency     = 32
)

// cacheSize is the effective cache_size.
func (c *engineConfig) cacheSize() int {
	if c.CacheSize == nil {
		return defaultCacheSize
	}
	return *c.CacheSize
}

// defaultConfig holds the mount-wide defaults; the per-type rotation
// defaults are in each secretKind (see the kinds' defaults).
func defaultConfig() *engineConfig {
	return &engineConfig{
		MaxVersions: 5,
		// 4 MiB: far above real mail, far below the plugin's memory.
		DKIMSignMaxMessageBytes: 4 << 20,
		HistoryLimit:            defaultHistoryLimit,
		AccessLimit:             defaultAccessLimit,
		JobConcurrency:          defaultJobConcurrency,
	}
}

// decodeTypeSettings decodes every type's settings into c.decoded, a new
// map (c may be a copy of the cached config). A setting that does not
// decode is an error, never the defaults: they could, say, activate or
// publish DKIM keys other than configured.
func (b *backend) decodeTypeSettings(c *engineConfig) error {
	decoded := map[string]any{}
	for _, k := range b.typeSettingKinds() {
		v, err := k.settings.decode(c.TypeSettings[k.Name])
		if err != nil {
			return err
		}
		decoded[k.Name] = v
	}
	c.decoded = decoded
	return nil
}

// migrateLegacy moves the per-type fields of an old config into Policies.
func (c *engineConfig) migrateLegacy() {
	for name, p := range map[string]*typePolicy{"smtp": c.LegacySMTP, "ssh": c.LegacySSH, "dkim": c.LegacyDKIM} {
		if p == nil {
			continue
		}
		if c.Policies == nil {
			c.Policies = map[string]typePolicy{}
		}
		if _, set := c.Policies[name]; !set {
			c.Policies[name] = *p
		}
	}
	c.LegacySMTP, c.LegacySSH, c.LegacyDKIM = nil, nil, nil
}

// Bounds of dkim_sign_max_message_bytes: below 1 KiB no real message fits,
// above 64 MiB one request could exhaust the plugin's memory.
const (
	minDKIMSignBytes = 1 << 10
	maxDKIMSignBytes = 64 << 20
)

// maxVersionsLimit bounds max_versions: every version lives in the secret's
// one storage entry, which must stay small.
const maxVersionsLimit = 100

// maxPolicyNameLen bounds password_policy, a Vault policy name.
const maxPolicyNameLen = 128

// Upper bounds of durations. A longer rotation period is no rotation at all
// (use 0 to turn scheduled rotation off); a longer grace keeps a replaced key
// valid long past any overlap a deployment needs. Alert thresholds are also
// bounded by their type's period (validatePolicies).
const (
	maxRotationPeriod = 3650 * day // 10 years
	maxGracePeriod    = 30 * day
)

// policySetting binds one per-class config field to the policy value it
// sets. The settings are derived from the kinds' policy classes: each has
// {prefix}_rotation_period, _alert_threshold, _risk_level, and
// _grace_period when its type has an overlap.
type policySetting struct {
	field string
	class policyClass
	help  string
	// max bounds a duration setting; zero marks the risk level.
	max time.Duration
	ptr func(*typePolicy) *time.Duration
}

func (b *backend) policySettings() []policySetting {
	var out []policySetting
	for _, k := range b.sortedKinds() {
		for _, c := range k.policyClasses() {
			out = append(out, classSettings(k, c)...)
		}
	}
	return out
}

func classSettings(k *secretKind, c policyClass) []policySetting {
	p, d := c.prefix, c.defaults
	period := fmt.Sprintf("Default rotation period of %ss (%s). 0 disables scheduled rotation.", c.title, days(d.RotationPeriod))
	if c.manual {
		period = fmt.Sprintf("How long a %s may be used before it is reported due (%s); it is never rotated automatically, "+
			"the new one is supplied to rotate. 0 turns the report off.", c.title, days(d.RotationPeriod))
	}
	out := []policySetting{
		{p + "_rotation_period", c, period, maxRotationPeriod, func(t *typePolicy) *time.Duration { return &t.RotationPeriod }},
		{p + "_alert_threshold", c, fmt.Sprintf("How long before next_rotation a %s is due_soon (%s).", c.title, days(d.AlertThreshold)),
			maxRotationPeriod, func(t *typePolicy) *time.Duration { return &t.AlertThreshold }},
	}
	if k.graceStatus != "" {
		out = append(out, policySetting{p + "_grace_period", c, fmt.Sprintf("How long a replaced %s stays valid (%s).", c.title, days(d.GracePeriod)),
			maxGracePeriod, func(t *typePolicy) *time.Duration { return &t.GracePeriod }})
	}
	return append(out, policySetting{field: p + "_risk_level", class: c,
		help: fmt.Sprintf("Risk level of %ss in rotation/status: %s (default %s).", c.title, strings.Join(riskLevels, ", "), d.RiskLevel)})
}

// days renders a default duration for help text: 30d, 48h.
func days(d time.Duration) string {
	if d%day == 0 {
		return fmt.Sprintf("%dd", d/day)
	}
	return d.String()
}

// checkDuration refuses a negative duration or one above max, naming the
// field and the bound.
func checkDuration(field string, secs int, max time.Duration) (time.Duration, error) {
	if secs < 0 {
		return 0, badInput("%s must not be negative (got %ds)", field, secs)
	}
	d := time.Duration(secs) * time.Second
	if int64(secs) > int64(max/time.Second) {
		return 0, badInput("%s must be at most %s (%ds, %d days); got %ds", field, max, int64(max/time.Second), int64(max/day), secs)
	}
	return d, nil
}

// typeSettings are config settings a type brings beyond its policy
// classes. The type owns their encoding; config stores what update returns
// under the type's name.
type typeSettings struct {
	fields map[string]*framework.FieldSchema
	// update applies the fields given in d to stored (nil: nothing stored
	// yet) and returns what to store. Errors are input errors naming the
	// field.
	update func(ctx context.Context, b *backend, d *framework.FieldData, stored json.RawMessage) (json.RawMessage, error)
	// decode reads stored (nil: nothing stored yet) over the defaults into
	// the value the type's code reads from engineConfig.decoded.
	decode func(stored json.RawMessage) (any, error)
	// view renders the settings in force, defaults included.
	view func(stored json.RawMessage) (map[string]interface{}, error)
	// help lists "field  what it does (default)" lines for config's help.
	help []string
}

func (b *backend) typeSettingKinds() []*secretKind {
	var out []*secretKind
	for _, k := range b.sortedKinds() {
		if k.settings != nil {
			out = append(out, k)
		}
	}
	return out
}

func pathConfig(b *backend) *framework.Path {
	fields := map[string]*framework.FieldSchema{
		"max_versions": {
			Type:        framework.TypeInt,
			Description: fmt.Sprintf("Versions kept per secret unless the secret sets its own (default 5, at most %d).", maxVersionsLimit),
		},
		"password_policy": {
			Type:        framework.TypeString,
			Description: "Name of a Vault password policy used to generate SMTP passwords (at most 128 characters). Empty: a built-in generator (44 random base62 characters).",
		},
		"dkim_sign_max_message_bytes": {
			Type: framework.TypeInt,
			Description: fmt.Sprintf("Largest message (decoded) that dkim/.../sign accepts; larger is a 413 (default 4 MiB, %d to %d).",
				minDKIMSignBytes, maxDKIMSignBytes),
		},
	}
	fields["history_limit"] = &framework.FieldSchema{Type: framework.TypeInt,
		Description: fmt.Sprintf("Rotation history rows kept per secret (default %d, 1 to %d).", defaultHistoryLimit, maxLogLimit)}
	fields["access_limit"] = &framework.FieldSchema{Type: framework.TypeInt,
		Description: fmt.Sprintf("Access records (downloads, exports) kept per secret, apart from the history (default %d, 1 to %d).", defaultAccessLimit, maxLogLimit)}
	fields["job_concurrency"] = &framework.FieldSchema{Type: framework.TypeInt,
		Description: fmt.Sprintf("Secrets a rotation job rotates at once (default %d, 1 to %d).", defaultJobConcurrency, maxJobConcurrency)}
	fields["cache_size"] = &framework.FieldSchema{Type: framework.TypeInt,
		Description: fmt.Sprintf("Decoded secret entries kept in memory per node for reads and signs (default %d, 0 turns the cache off, at most %d). "+
			"An entry takes about 5 to 40 KiB, at most 768 KiB.", defaultCacheSize, maxCacheSize)}
	for _, k := range b.typeSettingKinds() {
		for name, f := range k.settings.fields {
			fields[name] = f
		}
	}
	for _, s := range b.policySettings() {
		if s.ptr == nil {
			fields[s.field] = &framework.FieldSchema{Type: framework.TypeString, Description: s.help}
			continue
		}
		fields[s.field] = &framework.FieldSchema{Type: framework.TypeDurationSecond, Description: s.help}
	}
	return &framework.Path{
		Pattern:      "config",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix},
		Fields:       fields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.handle(b.pathConfigRead),
				Summary:      "Read the engine configuration.",
				DisplayAttrs: &framework.DisplayAttributes{OperationVerb: "read", OperationSuffix: "configuration"},
			},
			logical.UpdateOperation: &framework.PathOperation{
				Callback:                    b.handle(b.pathConfigWrite),
				Summary:                     "Change the engine configuration; fields left out keep their value.",
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "configure"},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
			// A config write already keeps what it is not given, so PATCH
			// (vault patch) is the same operation under its own verb.
			logical.PatchOperation: &framework.PathOperation{
				Callback:                    b.handle(b.pathConfigWrite),
				Summary:                     "Change the given configuration fields; the rest keep their value.",
				DisplayAttrs:                &framework.DisplayAttributes{OperationVerb: "patch", OperationSuffix: "configuration"},
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    "Rotation defaults, version retention and password generation for the whole mount.",
		HelpDescription: b.configHelp(),
	}
}

// config returns the stored configuration, or the defaults when none was
// written. It is cached and dropped on write and on invalidation.
func (b *backend) config(ctx context.Context, s logical.Storage) (*engineConfig, error) {
	b.cfgMu.RLock()
	cfg, gen := b.cfg, b.cfgGen
	b.cfgMu.RUnlock()
	if cfg != nil {
		return cfg, nil
	}
	cfg = defaultConfig()
	raw, err := s.Get(ctx, configStoragePath)
	if err != nil {
		return nil, err
	}
	if raw != nil {
		if err := raw.DecodeJSON(cfg); err != nil {
			return nil, fmt.Errorf("decoding config: %w", err)
		}
		cfg.migrateLegacy()
	}
	if err := b.decodeTypeSettings(cfg); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	b.cfgMu.Lock()
	if b.cfgGen == gen {
		b.cfg = cfg
		b.entries.setLimit(cfg.cacheSize())
	}
	b.cfgMu.Unlock()
	return cfg, nil
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, err := b.config(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	data := map[string]interface{}{
		"max_versions":    cfg.MaxVersions,
		"password_policy": cfg.PasswordPolicy,

		"dkim_sign_max_message_bytes": cfg.DKIMSignMaxMessageBytes,
	}
	data["history_limit"], data["access_limit"], data["job_concurrency"] = cfg.HistoryLimit, cfg.AccessLimit, cfg.JobConcurrency
	data["cache_size"] = cfg.cacheSize()
	for _, k := range b.typeSettingKinds() {
		view, err := k.settings.view(cfg.TypeSettings[k.Name])
		if err != nil {
			return nil, err
		}
		for name, v := range view {
			data[name] = v
		}
	}
	for _, s := range b.policySettings() {
		pol := s.class.policy(cfg)
		if s.ptr == nil {
			data[s.field] = pol.RiskLevel
			continue
		}
		data[s.field] = durationText(*s.ptr(&pol))
	}
	return &logical.Response{Data: data}, nil
}

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	// Read-modify-write of the config entry: concurrent writes of different
	// fields must not undo each other.
	// Its own mutex, not a stripe of the secret locks: a stripe is shared
	// with 1/256 of all secrets.
	b.cfgWriteMu.Lock()
	defer b.cfgWriteMu.Unlock()
	current, err := b.config(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	next := *current
	next.Policies = map[string]typePolicy{}
	for name, p := range current.Policies {
		next.Policies[name] = p
	}
	next.TypeSettings = map[string]json.RawMessage{}
	for name, raw := range current.TypeSettings {
		next.TypeSettings[name] = raw
	}
	for _, k := range b.typeSettingKinds() {
		raw, err := k.settings.update(ctx, b, d, next.TypeSettings[k.Name])
		if err != nil {
			return nil, err
		}
		if raw != nil {
			next.TypeSettings[k.Name] = raw
		}
	}
	periodsChanged := false
	for _, s := range b.policySettings() {
		v, ok := d.GetOk(s.field)
		if !ok {
			continue
		}
		pol := s.class.policy(&next)
		if s.ptr == nil {
			level := strings.TrimSpace(v.(string))
			if !strutil.StrListContains(riskLevels, level) {
				return nil, badInput("%s must be one of %s (got %s)", s.field, strings.Join(riskLevels, ", "), quoteShort(level))
			}
			pol.RiskLevel = level
		} else {
			dur, err := checkDuration(s.field, v.(int), s.max)
			if err != nil {
				return nil, err
			}
			periodsChanged = periodsChanged || *s.ptr(&pol) != dur
			*s.ptr(&pol) = dur
		}
		next.Policies[s.class.key] = pol
	}
	for _, lim := range []struct {
		field    string
		ptr      *int
		min, max int
	}{{"history_limit", &next.HistoryLimit, 1, maxLogLimit}, {"access_limit", &next.AccessLimit, 1, maxLogLimit},
		{"job_concurrency", &next.JobConcurrency, 1, maxJobConcurrency}} {
		if v, ok := d.GetOk(lim.field); ok {
			n := v.(int)
			if n < lim.min || n > lim.max {
				return nil, badInput("%s must be between %d and %d (got %d)", lim.field, lim.min, lim.max, n)
			}
			*lim.ptr = n
		}
	}
	if v, ok := d.GetOk("cache_size"); ok {
		n := v.(int)
		if n < 0 || n > maxCacheSize {
			return nil, badInput("cache_size must be between 0 (off) and %d (got %d)", maxCacheSize, n)
		}
		next.CacheSize = &n
	}
	if v, ok := d.GetOk("max_versions"); ok {
		n := v.(int)
		if n < 1 || n > maxVersionsLimit {
			return nil, badInput("max_versions must be between 1 and %d (got %d)", maxVersionsLimit, n)
		}
		next.MaxVersions = n
	}
	if v, ok := d.GetOk("dkim_sign_max_message_bytes"); ok {
		n := v.(int)
		if n < minDKIMSignBytes || n > maxDKIMSignBytes {
			return nil, badInput("dkim_sign_max_message_bytes must be between %d and %d (got %d)", minDKIMSignBytes, maxDKIMSignBytes, n)
		}
		next.DKIMSignMaxMessageBytes = n
	}
	if v, ok := d.GetOk("password_policy"); ok {
		next.PasswordPolicy = strings.TrimSpace(v.(string))
		if len(next.PasswordPolicy) > maxPolicyNameLen {
			return nil, badInput("password_policy is too long: at most %d characters", maxPolicyNameLen)
		}
		if next.PasswordPolicy != "" {
			if _, err := b.System().GeneratePasswordFromPolicy(ctx, next.PasswordPolicy); err != nil {
				return nil, badInput("password_policy %s cannot generate a password: %v", quoteShort(next.PasswordPolicy), err)
			}
		}
	}
	if err := b.validatePolicies(&next); err != nil {
		return nil, err
	}
	if err := b.decodeTypeSettings(&next); err != nil {
		return nil, err
	}
	entry, err := logical.StorageEntryJSON(configStoragePath, &next)
	if err != nil {
		return nil, err
	}
	if err := req.Storage.Put(ctx, entry); err != nil {
		return nil, err
	}
	b.cfgMu.Lock()
	b.cfg = &next
	b.cfgGen++
	b.entries.setLimit(next.cacheSize())
	b.cfgMu.Unlock()
	if periodsChanged {
		// Due times of secrets that use a type default moved: the index is
		// rebuilt in the background (resumable; see index.go).
		if err := b.startIndexRebuild(ctx, req.Storage, "config change"); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// validatePolicies rejects an alert threshold longer than its period: such a
// secret would be due_soon from the moment it is created.
func (b *backend) validatePolicies(c *engineConfig) error {
	for _, k := range b.sortedKinds() {
		for _, cl := range k.policyClasses() {
			pol := cl.policy(c)
			if pol.RotationPeriod > 0 && pol.AlertThreshold > pol.RotationPeriod {
				p := cl.prefix
				return badInput("%s_alert_threshold (%s) must not be longer than %s_rotation_period (%s)",
					p, pol.AlertThreshold, p, pol.RotationPeriod)
			}
		}
	}
	return nil
}

// configHelp is derived from the kinds, so a new type documents itself.
func (b *backend) configHelp() string {
	var sb strings.Builder
	sb.WriteString("Sets the defaults that every secret of a type uses unless it sets its own.\n\n")
	sb.WriteString("Durations accept seconds or a unit: 30d, 720h, 2592000.\n\n")
	for _, s := range b.policySettings() {
		fmt.Fprintf(&sb, "  %-32s %s\n", s.field, s.help)
	}
	for _, k := range b.typeSettingKinds() {
		for _, line := range k.settings.help {
			fmt.Fprintf(&sb, "  %s\n", line)
		}
	}
	fmt.Fprintf(&sb, "  %-32s %d\n", "max_versions", defaultConfig().MaxVersions)
	fmt.Fprintf(&sb, "  %-32s %s\n", "password_policy", `"" (built-in generator)`)
	fmt.Fprintf(&sb, "  %-32s %d (4 MiB)\n", "dkim_sign_max_message_bytes", defaultConfig().DKIMSignMaxMessageBytes)
	fmt.Fprintf(&sb, "  %-32s %d\n  %-32s %d\n  %-32s %d\n", "history_limit", defaultHistoryLimit,
		"access_limit", defaultAccessLimit, "job_concurrency", defaultJobConcurrency)
	fmt.Fprintf(&sb, "  %-32s %d (0 turns it off)\n", "cache_size", defaultCacheSize)
	sb.WriteString(`
A rotation period of 0 turns scheduled rotation off for that type. Rotation
periods and alert thresholds are at most 3650d (10 years), grace periods at
most 30d. An alert threshold may not be longer than its period. A secret's
rotation_status is due_soon inside the alert threshold and overdue once
next_rotation has passed. Changing a period rebuilds the due index in the
background; rotation/status shows its progress.`)
	return sb.String()
}
