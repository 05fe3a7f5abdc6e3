package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// secretsStoragePrefix holds one storage entry per secret, at
// secrets/{type}/{tenant}/{name}. The entry carries every kept version, the
// rotation metadata and the history, so one Get serves one `vault read` and one
// Put makes a change whole or not at all.
const secretsStoragePrefix = "secrets/"

// Version statuses shared by every type. Types with an overlap window add
// their own (DKIM: retiring, retired; SSH: grace).
const (
	statusActive  = "active"
	statusExpired = "expired"
	statusRevoked = "revoked"
)

// Rotation triggers, as the feature document names them.
const (
	triggerTime      = "time"
	triggerEvent     = "event"
	triggerManual    = "manual"
	triggerThreshold = "threshold"
)

// historyLimit bounds the rotation history kept in a secret's entry.
const historyLimit = 50

// actor says who caused a change; it comes from the request, never from input.
type actor struct {
	DisplayName string `json:"display_name,omitempty"`
	EntityID    string `json:"entity_id,omitempty"`
}

// schedulerActor is recorded for changes made by the periodic rotation.
var schedulerActor = actor{DisplayName: "penguinmails-scheduler"}

func actorOf(req *logical.Request) actor {
	if req == nil {
		return schedulerActor
	}
	return actor{DisplayName: req.DisplayName, EntityID: req.EntityID}
}

func (a actor) view() map[string]interface{} {
	return map[string]interface{}{"display_name": a.DisplayName, "entity_id": a.EntityID}
}

// secretVersion is one generation of a secret. Material is the type's own
// per-version data (password, key pair, ...), decoded by the type.
type secretVersion struct {
	Version     int             `json:"version"`
	CreatedTime time.Time       `json:"created_time"`
	CreatedBy   actor           `json:"created_by"`
	Status      string          `json:"status"`
	StatusTime  time.Time       `json:"status_time"`
	GraceUntil  time.Time       `json:"grace_until,omitempty"`
	Material    json.RawMessage `json:"material,omitempty"`
}

// historyEntry records one rotation (or revocation) of a secret.
type historyEntry struct {
	Time        time.Time `json:"time"`
	Operation   string    `json:"operation"`
	Trigger     string    `json:"trigger"`
	Reason      string    `json:"reason,omitempty"`
	IncidentID  string    `json:"incident_id,omitempty"`
	Actor       actor     `json:"actor"`
	Result      string    `json:"result"`
	FromVersion int       `json:"from_version"`
	ToVersion   int       `json:"to_version"`
	Error       string    `json:"error,omitempty"`
	// RevokePrevious marks an incident rotation that revoked every version
	// valid before it (the revoke row that follows lists them).
	RevokePrevious bool `json:"revoke_previous,omitempty"`
}

// secretEntry is the stored form of one secret of any type.
type secretEntry struct {
	Kind           string          `json:"kind"`
	Tenant         string          `json:"tenant"`
	Name           string          `json:"name"`
	CreatedTime    time.Time       `json:"created_time"`
	UpdatedTime    time.Time       `json:"updated_time"`
	CurrentVersion int             `json:"current_version"`
	Versions       []secretVersion `json:"versions"`
	// MaxVersions and RotationPeriod are per-secret overrides; zero means the
	// engine default from config, resolved at use so a config change applies.
	MaxVersions    int           `json:"max_versions,omitempty"`
	RotationPeriod time.Duration `json:"rotation_period,omitempty"`
	AutoRotate     bool          `json:"auto_rotate"`
	LastRotated    time.Time     `json:"last_rotated"`
	// LastRotationError is the error of the latest scheduled rotation when
	// it failed; a successful rotation clears it.
	LastRotationError     string          `json:"last_rotation_error,omitempty"`
	LastRotationErrorTime time.Time       `json:"last_rotation_error_time,omitempty"`
	History               []historyEntry  `json:"history,omitempty"`
	Settings              json.RawMessage `json:"settings,omitempty"`
}

func secretStorageKey(kind, tenant, name string) string {
	return secretsStoragePrefix + kind + "/" + tenant + "/" + name
}

func (e *secretEntry) storageKey() string { return secretStorageKey(e.Kind, e.Tenant, e.Name) }

// current returns the newest version.
func (e *secretEntry) current() *secretVersion {
	return e.version(e.CurrentVersion)
}

// version returns version n, or nil when it was never written or was trimmed.
func (e *secretEntry) version(n int) *secretVersion {
	for i := range e.Versions {
		if e.Versions[i].Version == n {
			return &e.Versions[i]
		}
	}
	return nil
}

// addVersion appends a new active version built from material. The previous
// version is handed to the type's supersede rule (expired at once, or kept
// valid through a grace period), and versions beyond maxVersions are dropped
// oldest first, even ones still inside a grace period (see trimVersions).
func (e *secretEntry) addVersion(material interface{}, by actor, now time.Time, kind *secretKind, cfg *engineConfig) error {
	raw, err := json.Marshal(material)
	if err != nil {
		return fmt.Errorf("encoding version: %w", err)
	}
	if prev := e.current(); prev != nil && prev.Status == statusActive {
		if err := kind.supersede(prev, now, cfg); err != nil {
			return err
		}
	}
	e.CurrentVersion++
	e.Versions = append(e.Versions, secretVersion{
		Version:     e.CurrentVersion,
		CreatedTime: now,
		CreatedBy:   by,
		Status:      statusActive,
		StatusTime:  now,
		Material:    raw,
	})
	e.UpdatedTime = now
	if kind.onNewVersion != nil {
		if err := kind.onNewVersion(e, &e.Versions[len(e.Versions)-1]); err != nil {
			return err
		}
	}
	e.trimVersions(e.effectiveMaxVersions(cfg))
	return nil
}

// trimVersions keeps at most max versions, dropping the oldest first. The
// cap is hard: a version still inside its grace period is dropped too, which
// ends its overlap early. Keeping it instead would let rotations inside the
// grace window grow the entry (and authorized_keys) without bound. The
// current version is never dropped. It reports whether anything was dropped.
func (e *secretEntry) trimVersions(max int) bool {
	if max < 1 {
		max = 1
	}
	over := len(e.Versions) - max
	if over <= 0 {
		return false
	}
	e.Versions = append([]secretVersion(nil), e.Versions[over:]...)
	return true
}

func (e *secretEntry) effectiveMaxVersions(cfg *engineConfig) int {
	if e.MaxVersions > 0 {
		return e.MaxVersions
	}
	return cfg.MaxVersions
}

// record appends to the rotation history, keeping the newest historyLimit.
func (e *secretEntry) record(h historyEntry) {
	e.History = append(e.History, h)
	if over := len(e.History) - historyLimit; over > 0 {
		e.History = append([]historyEntry(nil), e.History[over:]...)
	}
}

// decodeMaterial decodes a version's material into the type's struct.
func decodeMaterial(v *secretVersion, out interface{}) error {
	if err := json.Unmarshal(v.Material, out); err != nil {
		return fmt.Errorf("decoding version %d: %w", v.Version, err)
	}
	return nil
}

// metadataView is the part of a read that every type shares.
func (e *secretEntry) metadataView(v *secretVersion, kind *secretKind, cfg *engineConfig, now time.Time) map[string]interface{} {
	out := map[string]interface{}{
		"tenant":          e.Tenant,
		"name":            e.Name,
		"version":         v.Version,
		"current_version": e.CurrentVersion,
		"status":          v.Status,
		"created_time":    formatTime(e.CreatedTime),
		"updated_time":    formatTime(e.UpdatedTime),
		"version_created": formatTime(v.CreatedTime),
		"max_versions":    e.effectiveMaxVersions(cfg),
		"versions":        e.versionsView(),
	}
	for k, val := range rotationView(e, kind.policy(cfg), now) {
		out[k] = val
	}
	return out
}

func (e *secretEntry) versionsView() map[string]interface{} {
	out := make(map[string]interface{}, len(e.Versions))
	for _, v := range e.Versions {
		item := map[string]interface{}{
			"created_time": formatTime(v.CreatedTime),
			"created_by":   v.CreatedBy.view(),
			"status":       v.Status,
		}
		if !v.GraceUntil.IsZero() {
			item["grace_until"] = formatTime(v.GraceUntil)
		}
		out[fmt.Sprint(v.Version)] = item
	}
	return out
}

func (e *secretEntry) historyView() []interface{} {
	out := make([]interface{}, 0, len(e.History))
	for i := len(e.History) - 1; i >= 0; i-- { // newest first
		h := e.History[i]
		out = append(out, map[string]interface{}{
			"time":            formatTime(h.Time),
			"operation":       h.Operation,
			"trigger":         h.Trigger,
			"reason":          h.Reason,
			"incident_id":     h.IncidentID,
			"actor":           h.Actor.view(),
			"result":          h.Result,
			"from_version":    h.FromVersion,
			"to_version":      h.ToVersion,
			"error":           h.Error,
			"revoke_previous": h.RevokePrevious,
		})
	}
	return out
}

// formatTime renders a timestamp for responses; the zero time reads as "".
func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// loadSecret reads one secret; a missing one is (nil, nil).
func loadSecret(ctx context.Context, s logical.Storage, kind, tenant, name string) (*secretEntry, error) {
	raw, err := s.Get(ctx, secretStorageKey(kind, tenant, name))
	if err != nil || raw == nil {
		return nil, err
	}
	var e secretEntry
	if err := raw.DecodeJSON(&e); err != nil {
		return nil, fmt.Errorf("decoding %s/%s/%s: %w", kind, tenant, name, err)
	}
	return &e, nil
}

// maxEntryBytes bounds the encoded size of one secret's storage entry, well
// under the 1 MiB that Raft accepts for one entry (max_entry_size), leaving
// room for the barrier's encryption and seal wrapping. The other bounds
// (max_versions <= 100, key and text field lengths, historyLimit, private
// keys destroyed once a version is revoked or expired) keep every entry a
// request can build below it (TestSaveSecret_LargestEntryFitsTheBound);
// the guard is the backstop for anything those bounds missed.
const maxEntryBytes = 768 * 1024

// saveSecret writes e in one Put. An entry above maxEntryBytes is refused
// with a 413 and nothing is written: past Raft's limit every later write
// to the secret, revoke included, would fail.
func saveSecret(ctx context.Context, s logical.Storage, e *secretEntry) error {
	entry, err := logical.StorageEntryJSON(e.storageKey(), e)
	if err != nil {
		return err
	}
	if n := len(entry.Value); n > maxEntryBytes {
		return logical.CodedError(413, fmt.Sprintf("%s/%s/%s would take %d bytes in storage, more than the %d-byte bound of one secret; "+
			"lower its max_versions and retry", e.Kind, e.Tenant, e.Name, n, maxEntryBytes))
	}
	return s.Put(ctx, entry)
}

// listChildren lists the direct children of a storage folder, without the
// trailing slash that marks sub-folders, sorted.
func listChildren(ctx context.Context, s logical.Storage, prefix string) ([]string, error) {
	keys, err := s.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	for i, k := range keys {
		keys[i] = strings.TrimSuffix(k, "/")
	}
	sort.Strings(keys)
	return keys, nil
}

// modifyStored applies change to one stored secret under its lock and saves
// it with one Put. Grace periods that have ended are closed first, so change
// sees the statuses the clock implies. When change fails nothing is saved.
// It returns (nil, nil) when the secret does not exist.
func (b *backend) modifyStored(ctx context.Context, s logical.Storage, kind *secretKind, tenant, name string,
	change func(e *secretEntry, cfg *engineConfig, now time.Time) error) (*secretEntry, error) {
	lock := b.lockFor(secretStorageKey(kind.Name, tenant, name))
	lock.Lock()
	defer lock.Unlock()

	cfg, err := b.config(ctx, s)
	if err != nil {
		return nil, err
	}
	now := b.now()
	e, err := loadDerived(ctx, s, secretRef{kind: kind, tenant: tenant, name: name}, cfg, now)
	if err != nil || e == nil {
		return nil, err
	}
	if err := change(e, cfg, now); err != nil {
		return nil, err
	}
	if err := saveSecret(ctx, s, e); err != nil {
		return nil, err
	}
	b.reschedule(e, kind, cfg, now)
	return e, nil
}
