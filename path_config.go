package penguinmails

import (
	"context"
	"fmt"
	"strings"
	"time"

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
}

// engineConfig is the mount-wide configuration.
type engineConfig struct {
	SMTP           typePolicy `json:"smtp"`
	SSH            typePolicy `json:"ssh"`
	APIKey         typePolicy `json:"api_key"`
	DKIM           typePolicy `json:"dkim"`
	MaxVersions    int        `json:"max_versions"`
	PasswordPolicy string     `json:"password_policy"`
	// DKIMSignMaxMessageBytes bounds the decoded message of one DKIM sign:
	// one plugin process serves every mount and tenant.
	DKIMSignMaxMessageBytes int `json:"dkim_sign_max_message_bytes,omitempty"`
}

// defaultConfig carries the periods of the feature document: SSH 90 days with
// a 14-day alert and 24 h overlap; SMTP 30 days, alert 7; DKIM 365 days, alert
// 30, 48 h DNS grace. Providers publish no API-key period, so API keys use the
// platform's 90-day recommendation until one is set.
func defaultConfig() *engineConfig {
	return &engineConfig{
		SMTP:        typePolicy{RotationPeriod: 30 * day, AlertThreshold: 7 * day},
		SSH:         typePolicy{RotationPeriod: 90 * day, AlertThreshold: 14 * day, GracePeriod: 24 * time.Hour},
		APIKey:      typePolicy{RotationPeriod: 90 * day, AlertThreshold: 7 * day},
		DKIM:        typePolicy{RotationPeriod: 365 * day, AlertThreshold: 30 * day, GracePeriod: 48 * time.Hour},
		MaxVersions: 5,

		// 4 MiB: far above real mail, far below the plugin's memory.
		DKIMSignMaxMessageBytes: 4 << 20,
	}
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

// durationSetting binds one config field to the policy value it sets.
type durationSetting struct {
	field string
	ptr   func(*engineConfig) *time.Duration
	help  string
}

// max is the setting's upper bound: grace periods have their own.
func (s durationSetting) max() time.Duration {
	if strings.HasSuffix(s.field, "_grace_period") {
		return maxGracePeriod
	}
	return maxRotationPeriod
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

func durationSettings() []durationSetting {
	return []durationSetting{
		{"smtp_rotation_period", func(c *engineConfig) *time.Duration { return &c.SMTP.RotationPeriod }, "Default rotation period of SMTP credentials (30 days). 0 disables scheduled rotation."},
		{"smtp_alert_threshold", func(c *engineConfig) *time.Duration { return &c.SMTP.AlertThreshold }, "How long before next_rotation an SMTP credential is due_soon (7 days)."},
		{"ssh_rotation_period", func(c *engineConfig) *time.Duration { return &c.SSH.RotationPeriod }, "Default rotation period of SSH keys (90 days)."},
		{"ssh_alert_threshold", func(c *engineConfig) *time.Duration { return &c.SSH.AlertThreshold }, "How long before next_rotation an SSH key is due_soon (14 days)."},
		{"ssh_grace_period", func(c *engineConfig) *time.Duration { return &c.SSH.GracePeriod }, "How long a replaced SSH key stays in authorized_keys (24 hours)."},
		{"api_key_rotation_period", func(c *engineConfig) *time.Duration { return &c.APIKey.RotationPeriod }, "Default rotation period of provider API keys (90 days)."},
		{"api_key_alert_threshold", func(c *engineConfig) *time.Duration { return &c.APIKey.AlertThreshold }, "How long before next_rotation an API key is due_soon (7 days)."},
		{"dkim_rotation_period", func(c *engineConfig) *time.Duration { return &c.DKIM.RotationPeriod }, "Default rotation period of DKIM keys (365 days)."},
		{"dkim_alert_threshold", func(c *engineConfig) *time.Duration { return &c.DKIM.AlertThreshold }, "How long before next_rotation a DKIM key is due_soon (30 days)."},
		{"dkim_grace_period", func(c *engineConfig) *time.Duration { return &c.DKIM.GracePeriod }, "How long a replaced DKIM key stays published for verification (48 hours)."},
	}
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
	for _, s := range durationSettings() {
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
		},
		HelpSynopsis:    "Rotation defaults, version retention and password generation for the whole mount.",
		HelpDescription: strings.TrimSpace(configHelp),
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
	}
	b.cfgMu.Lock()
	if b.cfgGen == gen {
		b.cfg = cfg
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
	for _, s := range durationSettings() {
		data[s.field] = int64(*s.ptr(cfg) / time.Second)
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
	for _, s := range durationSettings() {
		if v, ok := d.GetOk(s.field); ok {
			dur, err := checkDuration(s.field, v.(int), s.max())
			if err != nil {
				return nil, err
			}
			*s.ptr(&next) = dur
		}
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
	if err := validatePolicies(&next); err != nil {
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
	b.cfgMu.Unlock()
	// Due times depend on the periods: rebuild the index on the next tick.
	b.sched.reset()
	return nil, nil
}

// validatePolicies rejects an alert threshold longer than its period: such a
// secret would be due_soon from the moment it is created.
func validatePolicies(c *engineConfig) error {
	for _, t := range []struct {
		name string
		pol  typePolicy
	}{{"smtp", c.SMTP}, {"ssh", c.SSH}, {"api_key", c.APIKey}, {"dkim", c.DKIM}} {
		if t.pol.RotationPeriod > 0 && t.pol.AlertThreshold > t.pol.RotationPeriod {
			return badInput("%s_alert_threshold (%s) must not be longer than %s_rotation_period (%s)",
				t.name, t.pol.AlertThreshold, t.name, t.pol.RotationPeriod)
		}
	}
	return nil
}

const configHelp = `
Sets the defaults that every secret of a type uses unless it sets its own.

Durations accept seconds or a unit: 30d, 720h, 2592000.

  smtp_rotation_period / smtp_alert_threshold        30d / 7d
  ssh_rotation_period / ssh_alert_threshold          90d / 14d
  ssh_grace_period                                   24h
  api_key_rotation_period / api_key_alert_threshold  90d / 7d
  dkim_rotation_period / dkim_alert_threshold        365d / 30d
  dkim_grace_period                                  48h
  max_versions                                       5
  password_policy                                    "" (built-in generator)
  dkim_sign_max_message_bytes                        4194304 (4 MiB)

A rotation period of 0 turns scheduled rotation off for that type. Rotation
periods and alert thresholds are at most 3650d (10 years), grace periods at
most 30d. An alert threshold may not be longer than its period. A secret's rotation_status is
due_soon inside the alert threshold and overdue once next_rotation has passed.
`
