package penguinmails

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/helper/jsonutil"
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
	statusPending = "pending"
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

// Default and largest bounds of the two logs kept in a secret's entry:
// rotation history (rotations, revocations, failures) and access records
// (downloads, exports). They are kept apart so that reads of a key can
// never push a rotation or incident row out.
const (
	defaultHistoryLimit = 50
	defaultAccessLimit  = 50
	// maxLogLimit keeps the largest DKIM entry (100 retiring rsa-4096 keys
	// and 1,000 remembered selectors) under maxEntryBytes with full logs.
	maxLogLimit = 100
)

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
	Version     int       `json:"version"`
	CreatedTime time.Time `json:"created_time"`
	CreatedBy   actor     `json:"created_by"`
	Status      string    `json:"status"`
	StatusTime  time.Time `json:"status_time"`
	GraceUntil  time.Time `json:"grace_until,omitempty"`
	// Set marks a pending version whose set step finished: the rollback
	// tests and finishes it instead of undoing it.
	Set      bool            `json:"set,omitempty"`
	Material json.RawMessage `json:"material,omitempty"`
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
	// Step is the rotation step that failed (create, set, test, finish).
	Step string `json:"step,omitempty"`
	// JobID is the job that made this change.
	JobID string `json:"job_id,omitempty"`
	// NoIncident flags a bulk or tenant rotation run without an incident_id.
	NoIncident bool `json:"no_incident,omitempty"`
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
	LastRotationError     string    `json:"last_rotation_error,omitempty"`
	LastRotationErrorTime time.Time `json:"last_rotation_error_time,omitempty"`
	// LastRotationErrorStep is the step that failed: create, set, test or
	// finish.
	LastRotationErrorStep string `json:"last_rotation_error_step,omitempty"`
	// DueAt, when set, is a due time the type derives from the material (an
	// OAuth access token's expiry less the refresh lead): the secret is due
	// then, or at the end of its period if that comes first.
	DueAt time.Time `json:"due_at,omitempty"`
	// Halted says why automatic rotation stopped until a person acts (an
	// OAuth grant the provider no longer honours); HaltedTime is when.
	Halted     string    `json:"halted,omitempty"`
	HaltedTime time.Time `json:"halted_time,omitempty"`
	// ActivationCheck is when the pending version awaiting activation is
	// looked at next; ActivationChecks counts the looks (backoff), and
	// ActivationReported marks that its deadline passed and was reported.
	ActivationCheck    time.Time `json:"activation_check,omitempty"`
	ActivationChecks   int       `json:"activation_checks,omitempty"`
	ActivationReported bool      `json:"activation_reported,omitempty"`
	// RotationFailures counts automatic rotations failed in a row;
	// NextAttempt is when the next one may run (exponential backoff).
	RotationFailures int       `json:"rotation_failures,omitempty"`
	NextAttempt      time.Time `json:"next_attempt,omitempty"`
	// RotationSchedule is a 5-field cron expression (UTC) that replaces the
	// rotation period.
	RotationSchedule string `json:"rotation_schedule,omitempty"`
	// MaxUses rotates the secret once it was read or used Uses >= MaxUses
	// times since its last rotation (the threshold trigger).
	MaxUses int `json:"max_uses,omitempty"`
	Uses    int `json:"uses,omitempty"`
	// DueNotified is the next_rotation for which the rotation-due event was
	// sent, so that it is sent once per due period.
	DueNotified time.Time `json:"due_notified,omitempty"`
	// LastVersion is the highest version number ever given, kept or not:
	// a pending version that was undone and dropped leaves its number used,
	// so that a number names one credential in history and outside.
	LastVersion int `json:"last_version,omitempty"`
	// LastJob is the job that last rotated the secret: a resumed job skips
	// what it already rotated.
	LastJob string `json:"last_job,omitempty"`
	// Indexed are the index keys written for this entry (index.go), so that
	// a change removes exactly the keys it replaces.
	Indexed indexKeys `json:"indexed,omitempty"`
	// Removals are previous credentials still to be removed at the outside
	// system (removal.go).
	Removals []removal       `json:"removals,omitempty"`
	History  []historyEntry  `json:"history,omitempty"`
	Access   []historyEntry  `json:"access,omitempty"`
	Settings json.RawMessage `json:"settings,omitempty"`
}

func secretStorageKey(kind, tenant, name string) string {
	return secretsStoragePrefix + kind + "/" + tenant + "/" + name
}

func (e *secretEntry) storageKey() string { return secretStorageKey(e.Kind, e.Tenant, e.Name) }

// current returns the newest version.
func (e *secretEntry) current() *secretVersion {
	return e.version(e.CurrentVersion)
}

// pending returns the version a staged rotation is making, or nil.
func (e *secretEntry) pending() *secretVersion {
	for i := range e.Versions {
		if e.Versions[i].Status == statusPending {
			return &e.Versions[i]
		}
	}
	return nil
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

// addVersion makes material the new current version at once: a write, or
// the finish of a rotation with no outside system.
func (e *secretEntry) addVersion(material interface{}, by actor, now time.Time, kind *secretKind, cfg *engineConfig) error {
	v, err := e.addPending(material, by, now)
	if err != nil {
		return err
	}
	return e.promote(v.Version, kind, cfg, now)
}

// addPending appends material as the pending version: it is kept and
// numbered, but nothing serves it until promote makes it current.
func (e *secretEntry) addPending(material interface{}, by actor, now time.Time) (*secretVersion, error) {
	raw, err := json.Marshal(material)
	if err != nil {
		return nil, fmt.Errorf("encoding version: %w", err)
	}
	n := e.nextVersionNumber()
	e.LastVersion = n // numbers of undone versions are not reused
	e.Versions = append(e.Versions, secretVersion{
		Version: n, CreatedTime: now, CreatedBy: by, Status: statusPending, StatusTime: now, Material: raw,
	})
	e.UpdatedTime = now
	return &e.Versions[len(e.Versions)-1], nil
}

// promote is the finish step: the pending version n becomes current, the
// one it replaces enters its overlap (or expires at once), and versions
// beyond max_versions are dropped oldest first, even ones still inside an
// overlap (see trimVersions).
func (e *secretEntry) promote(n int, kind *secretKind, cfg *engineConfig, now time.Time) error {
	if prev := e.current(); prev != nil && prev.Status == statusActive {
		if err := kind.supersede(e, prev, now, cfg); err != nil {
			return err
		}
	}
	v := e.version(n)
	if v == nil || v.Status != statusPending {
		return fmt.Errorf("version %d is not pending", n)
	}
	v.Status, v.StatusTime = statusActive, now
	e.CurrentVersion = n
	e.UpdatedTime = now
	if kind.onNewVersion != nil {
		if err := kind.onNewVersion(e, v); err != nil {
			return err
		}
	}
	_, err := e.trim(kind, cfg, now)
	return err
}

// nextVersionNumber is the number the next version gets: never one given
// before, kept or not.
func (e *secretEntry) nextVersionNumber() int {
	n := max(e.CurrentVersion, e.LastVersion) + 1
	if last := len(e.Versions); last > 0 && e.Versions[last-1].Version >= n {
		n = e.Versions[last-1].Version + 1
	}
	return n
}

// dropPending removes the pending version: its rotation failed or was
// undone. Its number is not reused.
func (e *secretEntry) dropPending() {
	kept := e.Versions[:0]
	for _, v := range e.Versions {
		if v.Status != statusPending {
			kept = append(kept, v)
		}
	}
	e.Versions = kept
}

// trimVersions keeps at most max versions, dropping the oldest first. The
// cap is hard: a version still inside its grace period is dropped too, which
// ends its overlap early. Keeping it instead would let rotations inside the
// grace window grow the entry (and authorized_keys) without bound. The
// current version is never dropped. It reports whether anything was dropped.
func (e *secretEntry) trimVersions(max int) []secretVersion {
	if max < 1 {
		max = 1
	}
	if e.pending() != nil {
		max++ // a pending version does not count against the bound
	}
	over := len(e.Versions) - max
	if over <= 0 {
		return nil
	}
	dropped := append([]secretVersion(nil), e.Versions[:over]...)
	e.Versions = append([]secretVersion(nil), e.Versions[over:]...)
	return dropped
}

// trim applies the effective max_versions. A dropped version that is still
// valid at an outside system is queued for removal there. It reports
// whether anything was dropped.
func (e *secretEntry) trim(kind *secretKind, cfg *engineConfig, now time.Time) (bool, error) {
	dropped := e.trimVersions(e.effectiveMaxVersions(cfg))
	for i := range dropped {
		v := &dropped[i]
		if v.Status == statusActive || (kind.graceStatus != "" && v.Status == kind.graceStatus) {
			if err := e.queueRemoval(kind, v, removeTrimmed, now); err != nil {
				return true, err
			}
		}
	}
	return len(dropped) > 0, nil
}

func (e *secretEntry) effectiveMaxVersions(cfg *engineConfig) int {
	if e.MaxVersions > 0 {
		return e.MaxVersions
	}
	return cfg.MaxVersions
}

// record appends to the rotation history, keeping the newest limit rows.
func (e *secretEntry) record(h historyEntry, limit int) {
	e.History = appendBounded(e.History, h, limit)
}

// recordAccess appends to the access records (downloads, exports), apart
// from the rotation history.
func (e *secretEntry) recordAccess(h historyEntry, limit int) {
	e.Access = appendBounded(e.Access, h, limit)
}

func appendBounded(log []historyEntry, h historyEntry, limit int) []historyEntry {
	if limit < 1 {
		limit = 1
	}
	log = append(log, h)
	if over := len(log) - limit; over > 0 {
		log = append([]historyEntry(nil), log[over:]...)
	}
	return log
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
		"versions":        e.versionsView(kind),
	}
	if len(e.Removals) > 0 || kind.endOverlap != nil {
		out["pending_removals"] = e.removalsView()
	}
	for k, val := range rotationView(e, kind.policy(cfg, e.Name), now) {
		out[k] = val
	}
	return out
}

func (e *secretEntry) versionsView(kind *secretKind) map[string]interface{} {
	out := make(map[string]interface{}, len(e.Versions))
	for i := range e.Versions {
		v := &e.Versions[i]
		item := map[string]interface{}{
			"created_time": formatTime(v.CreatedTime),
			"created_by":   v.CreatedBy.view(),
			"status":       v.Status,
			"stage":        kind.stageOf(v),
		}
		if !v.GraceUntil.IsZero() {
			item["grace_until"] = formatTime(v.GraceUntil)
		}
		out[fmt.Sprint(v.Version)] = item
	}
	return out
}

func historyView(log []historyEntry) []interface{} {
	out := make([]interface{}, 0, len(log))
	for i := len(log) - 1; i >= 0; i-- { // newest first
		h := log[i]
		row := map[string]interface{}{
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
		}
		if h.Step != "" {
			row["step"] = h.Step
		}
		if h.JobID != "" {
			row["job_id"] = h.JobID
		}
		if h.NoIncident {
			row["no_incident"] = true
		}
		out = append(out, row)
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
	e, err := decodeSecret(raw.Value)
	if err != nil {
		return nil, fmt.Errorf("decoding %s/%s/%s: %w", kind, tenant, name, err)
	}
	return e, nil
}

func decodeSecret(value []byte) (*secretEntry, error) {
	var e secretEntry
	if err := jsonutil.DecodeJSON(value, &e); err != nil {
		return nil, err
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
	_, err := putSecret(ctx, s, e)
	return err
}

// putSecret is saveSecret that also returns the bytes written.
func putSecret(ctx context.Context, s logical.Storage, e *secretEntry) ([]byte, error) {
	entry, err := logical.StorageEntryJSON(e.storageKey(), e)
	if err != nil {
		return nil, err
	}
	if n := len(entry.Value); n > maxEntryBytes {
		return nil, logical.CodedError(413, fmt.Sprintf("%s/%s/%s would take %d bytes in storage, more than the %d-byte bound of one secret; "+
			"lower its max_versions and retry", e.Kind, e.Tenant, e.Name, n, maxEntryBytes))
	}
	return entry.Value, s.Put(ctx, entry)
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

// loadDerived loads a secret and derives, on this copy only, what the clock
// and the config imply, so that what a read shows follows them even before
// the worker or the next write has persisted the change. A missing secret
// is nil. Writers pass the one now their whole change uses. It reads
// through the mount's entry cache (cache.go).
func (b *backend) loadDerived(ctx context.Context, s logical.Storage, ref secretRef, cfg *engineConfig, now time.Time) (*secretEntry, error) {
	e, err := b.loadEntry(ctx, s, ref.kind.Name, ref.tenant, ref.name)
	if err != nil || e == nil {
		return nil, err
	}
	if _, err := e.derive(ref.kind, cfg, now); err != nil {
		return nil, err
	}
	return e, nil
}

// derive ends the overlaps the clock has passed and drops the versions
// beyond the effective max_versions (lowered since the entry was written).
// It reports whether e changed, so the worker knows to persist it.
func (e *secretEntry) derive(kind *secretKind, cfg *engineConfig, now time.Time) (bool, error) {
	ended, err := kind.endGraces(e, now)
	if err != nil {
		return ended, err
	}
	trimmed, err := e.trim(kind, cfg, now)
	return ended || trimmed, err
}
