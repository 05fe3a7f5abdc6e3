package penguinmails

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Removals. A credential of a type with an outside system (a provider API
// key) stays valid there after Vault stops serving it, until the provider
// is told. Every version that leaves service (its overlap ends, it is
// revoked, or max_versions pushes it out while still valid) is queued on its
// entry, and the worker removes it at the provider through the type's
// endOverlap, retrying with backoff until that succeeds: Vault never
// forgets a key it made. Reads and rotation/status show what is queued.

// removal is one credential owed a removal at the outside system.
type removal struct {
	Version int `json:"version"`
	// Material is what the removal needs (a key id, the IAM user), with the
	// secret itself stripped by the type's onRevoke.
	Material    json.RawMessage `json:"material"`
	Reason      string          `json:"reason"`
	Since       time.Time       `json:"since"`
	Attempts    int             `json:"attempts,omitempty"`
	NextAttempt time.Time       `json:"next_attempt"`
	LastError   string          `json:"last_error,omitempty"`
}

// Why a credential is queued for removal.
const (
	removeOverlapEnded = "overlap ended"
	removeRevoked      = "revoked"
	removeTrimmed      = "dropped by max_versions while still valid"
)

// queueRemoval queues v's credential for removal at the outside system when
// the type has one and v holds something there. v's material must already
// be stripped of secrets (onGraceEnd, onRevoke) or be stripped here.
func (e *secretEntry) queueRemoval(k *secretKind, v *secretVersion, reason string, now time.Time) error {
	if k.endOverlap == nil || (k.needsRemoval != nil && !k.needsRemoval(v)) {
		return nil
	}
	for _, r := range e.Removals {
		if r.Version == v.Version {
			return nil // revoked during its overlap: already queued
		}
	}
	stripped := *v
	if k.onRevoke != nil {
		stripped.Material = append(json.RawMessage(nil), v.Material...)
		if err := k.onRevoke(&stripped); err != nil {
			return err
		}
	}
	e.Removals = append(e.Removals, removal{Version: v.Version, Material: stripped.Material, Reason: reason,
		Since: now, NextAttempt: now})
	return nil
}

// nextRemoval is when the worker must next try a removal; zero when none is
// queued.
func (e *secretEntry) nextRemoval() time.Time {
	var at time.Time
	for _, r := range e.Removals {
		if at.IsZero() || r.NextAttempt.Before(at) {
			at = r.NextAttempt
		}
	}
	return at
}

// removalsFailing reports whether a queued removal has failed.
func (e *secretEntry) removalsFailing() bool {
	for _, r := range e.Removals {
		if r.LastError != "" {
			return true
		}
	}
	return false
}

// removeDue tries every queued removal whose time has come. A success
// leaves the queue and is recorded; a failure stays, with backoff. It
// reports whether e changed.
func (b *backend) removeDue(ctx context.Context, e *secretEntry, k *secretKind, cfg *engineConfig, now time.Time) bool {
	if len(e.Removals) == 0 || k.endOverlap == nil {
		return false
	}
	changed := false
	kept := e.Removals[:0]
	for _, r := range e.Removals {
		if r.NextAttempt.After(now) {
			kept = append(kept, r)
			continue
		}
		changed = true
		v := &secretVersion{Version: r.Version, Material: r.Material}
		err := callStep(ctx, func(ctx context.Context) error { return k.endOverlap(ctx, b, e, v) })
		if err == nil {
			e.record(historyEntry{Time: now, Operation: "remove", Trigger: triggerTime, Reason: r.Reason,
				Actor: schedulerActor, Result: "success", FromVersion: r.Version, ToVersion: r.Version}, cfg.HistoryLimit)
			continue
		}
		r.Attempts++
		r.NextAttempt = now.Add(retryDelay(r.Attempts))
		var hint retryHinter
		if errors.As(err, &hint) && now.Add(hint.RetryDelay()).After(r.NextAttempt) {
			r.NextAttempt = now.Add(hint.RetryDelay()) // the provider asked for longer
		}
		r.LastError = err.Error()
		b.Logger().Warn("removal of a previous credential failed; retried with backoff",
			"secret", e.Kind+"/"+e.Tenant+"/"+e.Name, "version", r.Version, "attempts", r.Attempts,
			"next_attempt", formatTime(r.NextAttempt), "error", err)
		if r.Attempts == 1 {
			e.record(historyEntry{Time: now, Operation: "remove", Trigger: triggerTime, Reason: r.Reason,
				Actor: schedulerActor, Result: "failed", FromVersion: r.Version, ToVersion: r.Version, Error: err.Error()}, cfg.HistoryLimit)
		}
		kept = append(kept, r)
	}
	e.Removals = kept
	return changed
}

// removalsView shows the queue in reads.
func (e *secretEntry) removalsView() []interface{} {
	out := make([]interface{}, 0, len(e.Removals))
	for _, r := range e.Removals {
		out = append(out, map[string]interface{}{
			"version": r.Version, "reason": r.Reason, "since": formatTime(r.Since), "attempts": r.Attempts,
			"next_attempt": formatTime(r.NextAttempt), "last_error": r.LastError,
		})
	}
	return out
}

// removalWarning is the warning of a delete that leaves credentials valid at
// the outside system: those queued for removal, and those still in their
// overlap, whose removal was due at its end, which a deleted secret never
// reaches.
func (e *secretEntry) removalWarning(k *secretKind) string {
	vs := make([]int, 0, len(e.Removals))
	for _, r := range e.Removals {
		vs = append(vs, r.Version)
	}
	for i := range e.Versions {
		if v := &e.Versions[i]; e.owedAtOverlapEnd(k, v) && !slices.Contains(vs, v.Version) {
			vs = append(vs, v.Version)
		}
	}
	if len(vs) == 0 {
		return ""
	}
	slices.Sort(vs)
	return fmt.Sprintf("versions %v of %s/%s/%s were still owed a removal at the provider; they may still be valid there: "+
		"delete them in the provider's console", vs, e.Kind, e.Tenant, e.Name)
}

// owedAtOverlapEnd reports whether v is a previous credential in its
// overlap that the type removes at the outside system when it ends.
func (e *secretEntry) owedAtOverlapEnd(k *secretKind, v *secretVersion) bool {
	return k.endOverlap != nil && k.graceStatus != "" && v.Status == k.graceStatus &&
		v.Version != e.CurrentVersion && (k.needsRemoval == nil || k.needsRemoval(v))
}
