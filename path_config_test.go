package penguinmails

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func TestConfig_DefaultsFromFeatureDocument(t *testing.T) {
	env := newTestEnv(t)
	got := env.ok(logical.ReadOperation, "config", nil)
	// Durations read back as text ("720h"), the one format of every read.
	want := map[string]string{
		"smtp_rotation_period": "720h", "smtp_alert_threshold": "168h",
		"ssh_rotation_period": "2160h", "ssh_alert_threshold": "336h", "ssh_grace_period": "24h",
		"dkim_rotation_period": "8760h", "dkim_alert_threshold": "720h", "dkim_grace_period": "48h",
	}
	// API keys: one policy per provider, the feature document's 90 days and
	// 7-day alert; the previous key stays valid for a day.
	for _, p := range []string{"mailgun", "postmark", "sendgrid", "ses"} {
		want[p+"_rotation_period"], want[p+"_alert_threshold"], want[p+"_grace_period"] = "2160h", "168h", "24h"
	}
	// OAuth tokens are due by their expiry (refresh_lead before it); the
	// period is only an upper bound on a token's age, off by default.
	want["oauth_rotation_period"], want["oauth_alert_threshold"] = "0s", "0s"
	// DKIM's own settings: staged activation, after a one-hour delay by
	// default; ended records are listed as revoked for a week.
	want["dkim_publish_lead"], want["dkim_activation_deadline"], want["dkim_revocation_period"] = "1h", "24h", "168h"
	if got["dkim_activation"] != "delay" || got["dkim_activation_quorum"] != 0 || got["dkim_delegation_zone"] != "" ||
		len(got["dns_resolvers"].([]string)) != 0 {
		t.Errorf("dkim settings: %v %v %v %v", got["dkim_activation"], got["dkim_activation_quorum"], got["dkim_delegation_zone"], got["dns_resolvers"])
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %s", k, got[k], v)
		}
	}
	risk := map[string]string{"smtp_risk_level": "medium", "ssh_risk_level": "high", "dkim_risk_level": "low",
		"mailgun_risk_level": "medium", "postmark_risk_level": "medium", "sendgrid_risk_level": "medium", "ses_risk_level": "medium", "oauth_risk_level": "high"}
	for k, v := range risk {
		if got[k] != v {
			t.Errorf("%s = %v, want %s", k, got[k], v)
		}
	}
	limits := map[string]int{"max_versions": 5, "history_limit": 50, "access_limit": 50, "job_concurrency": 4}
	for k, v := range limits {
		if got[k] != v {
			t.Errorf("%s = %v, want %d", k, got[k], v)
		}
	}
	if got["password_policy"] != "" {
		t.Errorf("password_policy %q", got["password_policy"])
	}
	// The settings are derived from the types served: no type, no setting.
	// Overlap-free types have no grace period.
	for _, absent := range []string{"api_key_rotation_period", "api_key_alert_threshold", "smtp_grace_period"} {
		if _, ok := got[absent]; ok {
			t.Errorf("config shows %s, a setting of no type served", absent)
		}
	}
	if got["cache_size"] != defaultCacheSize {
		t.Errorf("cache_size %v, want %d", got["cache_size"], defaultCacheSize)
	}
	expected := expectedConfigSettings(env.b)
	for name := range expected {
		if _, ok := got[name]; !ok {
			t.Errorf("config lacks %s", name)
		}
	}
	for name := range got {
		if !expected[name] {
			t.Errorf("config shows %s, a setting of no type served and not the mount's", name)
		}
	}
}

// expectedConfigSettings are the settings a config read must show,
// derived from the kinds served, so that a new type needs no edit here:
// per policy class {prefix}_rotation_period, _alert_threshold and
// _risk_level, _grace_period when the type has an overlap, and the fields
// of the type's own settings; besides them, the mount's own settings.
func expectedConfigSettings(b *backend) map[string]bool {
	out := map[string]bool{}
	for _, name := range []string{"max_versions", "password_policy", "dkim_sign_max_message_bytes", "history_limit", "access_limit",
		"job_concurrency", "cache_size"} {
		out[name] = true
	}
	for _, k := range b.kinds {
		for _, c := range k.policyClasses() {
			out[c.prefix+"_rotation_period"], out[c.prefix+"_alert_threshold"], out[c.prefix+"_risk_level"] = true, true, true
			if k.graceStatus != "" {
				out[c.prefix+"_grace_period"] = true
			}
		}
		if k.settings != nil {
			for name := range k.settings.fields {
				out[name] = true
			}
		}
	}
	return out
}

// A setting of a type the engine does not serve is refused as an unknown
// field, naming it, and nothing is stored.
func TestConfig_RefusesSettingsOfTypesNotServed(t *testing.T) {
	env := newTestEnv(t)
	msg := env.badRequest(logical.UpdateOperation, "config", map[string]interface{}{"api_key_rotation_period": "90d"})
	if !strings.Contains(msg, "api_key_rotation_period") {
		t.Fatalf("message %q does not name the unknown field", msg)
	}
	if keys := env.storedKeys(); len(keys) != 0 {
		t.Fatalf("refused config was stored: %v", keys)
	}
}

func TestConfig_WriteKeepsUnsetFieldsAndPersists(t *testing.T) {
	env := newTestEnv(t)
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"smtp_rotation_period": "60d", "max_versions": 10})
	env.ok(logical.UpdateOperation, "config", map[string]interface{}{"dkim_grace_period": "72h"})

	// A fresh backend on the same storage reads what was written.
	fresh := newTestEnv(t)
	fresh.storage = env.storage
	got := fresh.ok(logical.ReadOperation, "config", nil)
	if got["smtp_rotation_period"] != "1440h" || got["max_versions"] != 10 || got["dkim_grace_period"] != "72h" || got["ssh_rotation_period"] != "2160h" {
		t.Fatalf("config after two partial writes: %v", got)
	}
}

func TestConfig_RejectsNonsense(t *testing.T) {
	cases := map[string]struct {
		in      map[string]interface{}
		mention []string
	}{
		"negative period":        {map[string]interface{}{"ssh_rotation_period": -1}, []string{"ssh_rotation_period", "negative"}},
		"negative grace":         {map[string]interface{}{"dkim_grace_period": -60}, []string{"dkim_grace_period"}},
		"threshold above period": {map[string]interface{}{"smtp_alert_threshold": "31d"}, []string{"smtp_alert_threshold", "smtp_rotation_period"}},
		"period below threshold": {map[string]interface{}{"dkim_rotation_period": "10d"}, []string{"dkim_alert_threshold", "dkim_rotation_period"}},
		"max_versions zero":      {map[string]interface{}{"max_versions": 0}, []string{"max_versions", "between 1 and"}},
		"max_versions huge":      {map[string]interface{}{"max_versions": 1000}, []string{"max_versions"}},
		"duration garbage":       {map[string]interface{}{"smtp_rotation_period": "soon"}, []string{"smtp_rotation_period"}},
		"policy name too long":   {map[string]interface{}{"password_policy": strings.Repeat("p", 129)}, []string{"password_policy", "128"}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			env := newTestEnv(t)
			msg := env.badRequest(logical.UpdateOperation, "config", tc.in)
			for _, m := range tc.mention {
				if !strings.Contains(msg, m) {
					t.Errorf("message %q does not mention %q", msg, m)
				}
			}
			if keys := env.storedKeys(); len(keys) != 0 {
				t.Errorf("refused config was stored: %v", keys)
			}
		})
	}
}

// stallFirstConfigPut holds the first Put of the config entry until a second
// one arrives (or a timeout passes), to interleave two config writes.
type stallFirstConfigPut struct {
	logical.Storage
	once    sync.Once
	second  chan struct{}
	stalled atomic.Bool
}

func (s *stallFirstConfigPut) Put(ctx context.Context, e *logical.StorageEntry) error {
	if e.Key == configStoragePath {
		if s.stalled.CompareAndSwap(false, true) {
			select {
			case <-s.second:
			case <-time.After(300 * time.Millisecond):
			}
		} else {
			s.once.Do(func() { close(s.second) })
		}
	}
	return s.Storage.Put(ctx, e)
}

func TestConfig_ConcurrentWritesKeepBothChanges(t *testing.T) {
	env := newTestEnv(t)
	storage := &stallFirstConfigPut{Storage: env.storage, second: make(chan struct{})}
	write := func(data map[string]interface{}) {
		resp, err := env.b.HandleRequest(context.Background(), &logical.Request{
			Operation: logical.UpdateOperation, Path: "config", Data: data, Storage: storage})
		if err != nil || (resp != nil && resp.IsError()) {
			t.Errorf("config write %v: %v %v", data, resp, err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); write(map[string]interface{}{"smtp_rotation_period": "60d"}) }()
	for deadline := time.Now().Add(10 * time.Second); !storage.stalled.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first config write never reached storage")
		}
	}
	write(map[string]interface{}{"max_versions": 10})
	wg.Wait()

	fresh := newTestEnv(t)
	fresh.storage = env.storage
	got := fresh.ok(logical.ReadOperation, "config", nil)
	if got["smtp_rotation_period"] != "1440h" || got["max_versions"] != 10 {
		t.Fatalf("a concurrent config write was lost: %v", got)
	}
}

// stallConfigGet holds a Get of the config entry, after it has read storage,
// until release is closed.
type stallConfigGet struct {
	logical.Storage
	read    chan struct{}
	release chan struct{}
}

func (s *stallConfigGet) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := s.Storage.Get(ctx, key)
	if key == configStoragePath {
		close(s.read)
		<-s.release
	}
	return e, err
}

func TestConfig_CacheNotFilledWithWhatAnInvalidationReplaced(t *testing.T) {
	env := newTestEnv(t)
	ctx := context.Background()
	stall := &stallConfigGet{Storage: env.storage, read: make(chan struct{}), release: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := env.b.config(ctx, stall); err != nil {
			t.Error(err)
		}
	}()
	<-stall.read // the reader has the defaults from storage
	// Another node changes the config; this node is told to drop its cache.
	entry, err := logical.StorageEntryJSON(configStoragePath, &engineConfig{Policies: map[string]typePolicy{"smtp": {RotationPeriod: 60 * day}}, MaxVersions: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := env.storage.Put(ctx, entry); err != nil {
		t.Fatal(err)
	}
	env.b.invalidate(ctx, configStoragePath)
	close(stall.release)
	<-done

	if got := env.ok(logical.ReadOperation, "config", nil); got["max_versions"] != 7 {
		t.Fatalf("config after invalidation: max_versions %v, want 7 (a stale read was cached)", got["max_versions"])
	}
}
