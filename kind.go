package penguinmails

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Computed rotation_status values.
const (
	rotationHealthy      = "healthy"
	rotationDueSoon      = "due_soon"
	rotationOverdue      = "overdue"
	rotationNotScheduled = "not_scheduled"
)

// secretKind describes one secret type. Everything a type does differently
// from the others is here; versions, rotation, history, listing and the
// scheduler are shared and live in secret.go, rotation.go and paths_secret.go.
type secretKind struct {
	// Name is the path prefix and the storage folder: "smtp", "dkim", ...
	Name string
	// Title reads well in help text: "SMTP credential".
	Title string
	// policy picks this type's defaults out of the engine config.
	policy func(*engineConfig) typePolicy
	// paths builds the type's own {name} path (create, read, update, delete)
	// and any extra sub-paths; list, rotate and history paths are shared.
	paths func(b *backend, k *secretKind) []*framework.Path
	// generate returns the material of the next version when rotating. It
	// sees the current entry so that it can keep what must stay the same,
	// and now, the rotation's own time. It must not change e: a rotation
	// that fails after it leaves the entry as it was.
	generate func(ctx context.Context, b *backend, e *secretEntry, cfg *engineConfig, now time.Time) (interface{}, error)
	// onNewVersion, when set, runs after a new version v was added to e, for
	// what the type keeps about every version it ever had (DKIM: the
	// selectors, which are never reused).
	onNewVersion func(e *secretEntry, v *secretVersion) error
	// onRevoke, when set, strips what a revoked version must not keep (a
	// private key) from its material.
	onRevoke func(v *secretVersion) error
	// graceStatus is the status of a superseded version during its grace
	// period; afterGrace is its status once the grace has ended. Types
	// without a grace period leave graceStatus empty.
	graceStatus string
	afterGrace  string
	// onGraceEnd, when set, strips what must not outlive the grace period
	// (a DKIM private key, for example) from a version's material.
	onGraceEnd func(v *secretVersion) error
	// revocable adds the {name}/revoke path: every live version is revoked
	// at once, without grace, until the next rotation.
	revocable bool
	// checkNameSpelling, when set, replaces the generic identifier rule for
	// the {name} segment of {tenant}/{name} (DKIM names are domains). A name
	// with one canonical spelling must refuse every other spelling with a
	// 400 that names the canonical path, never treat it as an alias.
	checkNameSpelling func(tenant, name string) error
	// nameRule describes the {name} segment in help text when
	// checkNameSpelling applies a rule other than the generic identifier
	// rule.
	nameRule string
}

// checkName validates the {name} segment of {type}/{tenant}/{name}. The
// name is stored as given: it must already be the one accepted spelling.
func (k *secretKind) checkName(tenant, name string) error {
	if k.checkNameSpelling != nil {
		return k.checkNameSpelling(tenant, name)
	}
	return validateIdentifier("name", name)
}

// supersede moves the previously active version out of service: at once, or
// after the type's grace period when it has one.
func (k *secretKind) supersede(v *secretVersion, now time.Time, cfg *engineConfig) error {
	grace := k.policy(cfg).GracePeriod
	v.StatusTime = now
	switch {
	case k.graceStatus != "" && grace > 0:
		v.Status = k.graceStatus
		v.GraceUntil = now.Add(grace)
	case k.afterGrace != "":
		// A grace period configured to 0 ends at once, and what must not
		// outlive it (a DKIM private key) goes now, not at the next tick.
		v.GraceUntil = now
		return k.endGrace(v)
	default:
		v.Status = statusExpired
	}
	return nil
}

// endGraces moves versions whose grace period has passed to their final
// status. It reports whether anything changed. Reads call it on their copy so
// that what they show follows the clock; the scheduler persists it.
func (k *secretKind) endGraces(e *secretEntry, now time.Time) (bool, error) {
	if k.graceStatus == "" {
		return false, nil
	}
	changed := false
	for i := range e.Versions {
		v := &e.Versions[i]
		if v.Status != k.graceStatus || v.GraceUntil.After(now) {
			continue
		}
		if err := k.endGrace(v); err != nil {
			return changed, err
		}
		changed = true
	}
	return changed, nil
}

// endGrace moves one version from its grace status to its final status.
func (k *secretKind) endGrace(v *secretVersion) error {
	v.Status = k.afterGrace
	v.StatusTime = v.GraceUntil
	if k.onGraceEnd != nil {
		return k.onGraceEnd(v)
	}
	return nil
}

// effectivePeriod is the secret's own rotation_period, or the type default.
func (e *secretEntry) effectivePeriod(pol typePolicy) time.Duration {
	if e.RotationPeriod > 0 {
		return e.RotationPeriod
	}
	return pol.RotationPeriod
}

// nextRotation is derived from the stored last_rotated time and the period in
// force now, so a config change moves it without rewriting any secret.
func (e *secretEntry) nextRotation(pol typePolicy) time.Time {
	period := e.effectivePeriod(pol)
	if period <= 0 || e.LastRotated.IsZero() {
		return time.Time{}
	}
	return e.LastRotated.Add(period)
}

func (e *secretEntry) rotationStatus(pol typePolicy, now time.Time) string {
	next := e.nextRotation(pol)
	switch {
	case next.IsZero():
		return rotationNotScheduled
	case !now.Before(next):
		return rotationOverdue
	case next.Sub(now) <= pol.AlertThreshold:
		return rotationDueSoon
	default:
		return rotationHealthy
	}
}

// rotationView is the rotation metadata shown by every read.
func rotationView(e *secretEntry, pol typePolicy, now time.Time) map[string]interface{} {
	return map[string]interface{}{
		"last_rotated":        formatTime(e.LastRotated),
		"next_rotation":       formatTime(e.nextRotation(pol)),
		"rotation_period":     int64(e.effectivePeriod(pol) / time.Second),
		"alert_threshold":     int64(pol.AlertThreshold / time.Second),
		"rotation_status":     e.rotationStatus(pol, now),
		"auto_rotate":         e.AutoRotate,
		"last_rotation_by":    e.lastRotationActor(),
		"last_rotation_error": e.LastRotationError,
	}
}

// noteRotationFailure records a failed scheduled rotation: the error on the
// entry for reads, and one history row per run of failures, so that a
// rotation retried every minute cannot push real rotations out of history.
func (e *secretEntry) noteRotationFailure(r rotation, now time.Time, err error) {
	e.LastRotationError, e.LastRotationErrorTime = err.Error(), now
	if n := len(e.History); n > 0 && e.History[n-1].Operation == "rotate" && e.History[n-1].Result == "failed" {
		return
	}
	e.record(historyEntry{
		Time: now, Operation: "rotate", Trigger: r.Trigger, Reason: r.Reason, Actor: r.Actor,
		Result: "failed", FromVersion: e.CurrentVersion, ToVersion: e.CurrentVersion, Error: err.Error(),
	})
}

// lastRotationActor is whoever made the version that last_rotated points at:
// the creating write, a password change or a rotation.
func (e *secretEntry) lastRotationActor() string {
	for _, v := range e.Versions {
		if v.CreatedTime.Equal(e.LastRotated) {
			return v.CreatedBy.DisplayName
		}
	}
	return ""
}

// rotation describes why and by whom a rotation was asked for.
type rotation struct {
	Trigger    string
	Reason     string
	IncidentID string
	Actor      actor
	// RevokePrevious revokes, in the same change, every version that was
	// valid before the rotation (the superseded one and any in grace).
	RevokePrevious bool
}

// rotateEntry makes the next version of e with newly generated material and
// records it. The caller holds the secret's lock and saves the entry.
func (b *backend) rotateEntry(ctx context.Context, e *secretEntry, kind *secretKind, cfg *engineConfig, r rotation, now time.Time) error {
	material, err := kind.generate(ctx, b, e, cfg, now)
	if err != nil {
		return err
	}
	return e.rotateTo(material, kind, cfg, r, now)
}

// rotateTo makes material the next version and records it as a rotation.
// Types whose writes replace the material with caller-chosen parameters
// (a DKIM key_type or selector) use it directly.
func (e *secretEntry) rotateTo(material interface{}, kind *secretKind, cfg *engineConfig, r rotation, now time.Time) error {
	from := e.CurrentVersion
	// Taken before the new version supersedes the current one, which may
	// expire it at once (SMTP) or move it into grace (SSH, DKIM).
	live := e.liveVersions(kind)
	if err := e.addVersion(material, r.Actor, now, kind, cfg); err != nil {
		return err
	}
	e.LastRotated = now
	e.LastRotationError, e.LastRotationErrorTime = "", time.Time{}
	e.record(historyEntry{
		Time: now, Operation: "rotate", Trigger: r.Trigger, Reason: r.Reason,
		IncidentID: r.IncidentID, Actor: r.Actor, Result: "success",
		FromVersion: from, ToVersion: e.CurrentVersion, RevokePrevious: r.RevokePrevious,
	})
	if !r.RevokePrevious {
		return nil
	}
	_, err := e.revokeVersions(kind, live, r, now)
	return err
}

// revokedAt lists the versions revoked at now, oldest first: what a
// rotation with revoke_previous (or a revoke) has just revoked.
func (e *secretEntry) revokedAt(now time.Time) []int {
	out := []int{}
	for _, v := range e.Versions {
		if v.Status == statusRevoked && v.StatusTime.Equal(now) {
			out = append(out, v.Version)
		}
	}
	return out
}

// rotateStored loads, rotates and saves one secret under its lock. It returns
// the updated entry, or (nil, nil) when the secret does not exist.
func (b *backend) rotateStored(ctx context.Context, s logical.Storage, kind *secretKind, tenant, name string, r rotation) (*secretEntry, error) {
	attempted := false // rotate-fail is for a failed rotation, not a failed load
	e, err := b.modifyStored(ctx, s, kind, tenant, name, func(e *secretEntry, cfg *engineConfig, now time.Time) error {
		attempted = true
		return b.rotateEntry(ctx, e, kind, cfg, r, now)
	})
	if err != nil {
		if attempted {
			b.emit(ctx, "rotate-fail", &secretEntry{Kind: kind.Name, Tenant: tenant, Name: name}, "trigger", r.Trigger)
		}
		return nil, err
	}
	if e != nil {
		b.emit(ctx, "rotate", e, "trigger", r.Trigger, "version", fmt.Sprint(e.CurrentVersion))
		if r.RevokePrevious {
			b.emit(ctx, "revoke", e, "trigger", r.Trigger, "version", fmt.Sprint(e.CurrentVersion))
		}
	}
	return e, nil
}

// emit sends a plugin event. Events carry names and versions, never secret
// material. Vault CE has no event bus, so ErrNoEvents is expected and ignored.
func (b *backend) emit(ctx context.Context, event string, e *secretEntry, pairs ...string) {
	meta := append([]string{
		logical.EventMetadataPath, e.Kind + "/" + e.Tenant + "/" + e.Name,
		logical.EventMetadataModified, "true",
		"kind", e.Kind, "tenant", e.Tenant, "name", e.Name,
	}, pairs...)
	err := logical.SendEvent(ctx, b, "penguinmails/"+event, meta...)
	if err != nil && !errors.Is(err, framework.ErrNoEvents) {
		b.Logger().Debug("event not sent", "event", event, "error", err)
	}
}
