package penguinmails

import (
	"strings"
	"time"

	vaultrotation "github.com/hashicorp/vault/sdk/rotation"
)

// Computed rotation_status values. failing is a status of its own in
// rotation/status: a secret whose last automatic rotation failed.
const (
	rotationHealthy      = "healthy"
	rotationDueSoon      = "due_soon"
	rotationOverdue      = "overdue"
	rotationNotScheduled = "not_scheduled"
	rotationFailing      = "failing"
)

// Backoff of failed automatic rotations: the first retry after a minute,
// doubling up to six hours. The next attempt is stored on the secret, so a
// restart or a failover keeps the pace, and a secret that always fails is
// written a handful of times a day, not every minute.
const (
	retryBase = time.Minute
	retryCap  = 6 * time.Hour
)

func retryDelay(failures int) time.Duration { return backoff(failures, retryBase, retryCap) }

// backoff is base doubled for each attempt after the first, at most limit.
func backoff(attempts int, base, limit time.Duration) time.Duration {
	d := base
	for i := 1; i < attempts && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// parseSchedule parses a 5-field cron expression (minute hour day-of-month
// month day-of-week), read in UTC, with the parser Vault's own rotation
// schedules use.
func parseSchedule(expr string) (func(time.Time) time.Time, error) {
	s, err := vaultrotation.DefaultScheduler.Parse(expr)
	if err != nil {
		return nil, err
	}
	return func(t time.Time) time.Time { return s.Next(t.UTC()) }, nil
}

// effectivePeriod is the secret's own rotation_period, or the type default.
func (e *secretEntry) effectivePeriod(pol typePolicy) time.Duration {
	if e.RotationPeriod > 0 {
		return e.RotationPeriod
	}
	return pol.RotationPeriod
}

// nextRotation is derived from the stored last_rotated time and the period
// or schedule in force now, so a config change moves it without rewriting
// the secret. A secret's own rotation_schedule wins over any period.
func (e *secretEntry) nextRotation(pol typePolicy) time.Time {
	if e.LastRotated.IsZero() {
		return e.DueAt
	}
	next := e.scheduledRotation(pol)
	if !e.DueAt.IsZero() && (next.IsZero() || e.DueAt.Before(next)) {
		return e.DueAt
	}
	return next
}

// scheduledRotation is the due time of the period or schedule alone.
func (e *secretEntry) scheduledRotation(pol typePolicy) time.Time {
	if e.RotationSchedule != "" {
		next, err := parseSchedule(e.RotationSchedule)
		if err != nil {
			return time.Time{} // validated on write; never scheduled if not
		}
		return next(e.LastRotated)
	}
	period := e.effectivePeriod(pol)
	if period <= 0 {
		return time.Time{}
	}
	return e.LastRotated.Add(period)
}

func (e *secretEntry) rotationStatus(pol typePolicy, now time.Time) string {
	return statusAt(e.nextRotation(pol), pol, now)
}

// statusAt is the rotation status of a secret due at next: the index keeps
// next, so rotation/status can judge a row before reading the secret.
func statusAt(next time.Time, pol typePolicy, now time.Time) string {
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

// automated reports whether the engine rotates the secret by itself when a
// time trigger fires.
func (e *secretEntry) automated() bool { return e.AutoRotate }

// overUses reports whether the threshold trigger has fired: the secret was
// read or used max_uses times since its last rotation.
func (e *secretEntry) overUses() bool { return e.MaxUses > 0 && e.Uses >= e.MaxUses }

// dueTrigger says why the worker must rotate e now, or "" when it need not.
// The stored timestamps decide, so a rotation done on one node is never
// repeated by another after a failover, and a tick that runs twice rotates
// once.
func (e *secretEntry) dueTrigger(pol typePolicy, now time.Time) string {
	cur := e.current()
	if cur == nil || cur.Status != statusActive || e.pending() != nil || e.Halted != "" || now.Before(e.NextAttempt) {
		return ""
	}
	if e.overUses() {
		return triggerThreshold
	}
	if e.automated() && e.rotationStatus(pol, now) == rotationOverdue {
		return triggerTime
	}
	return ""
}

// alertStart is when the secret enters its alert threshold, the moment of
// the rotation-due event; zero once that event was sent for this
// next_rotation or when nothing is scheduled.
func (e *secretEntry) alertStart(pol typePolicy) time.Time {
	next := e.nextRotation(pol)
	if next.IsZero() || e.DueNotified.Equal(next) {
		return time.Time{}
	}
	return next.Add(-pol.AlertThreshold)
}

// nextWork is the earliest time the worker must look at the secret: the end
// of an overlap, a removal at an outside system, its next automatic rotation (or retry), the threshold
// trigger, or the rotation-due event. Zero means never.
func (e *secretEntry) nextWork(kind *secretKind, cfg *engineConfig) time.Time {
	pol := kind.policy(cfg, e.Name)
	var at time.Time
	earlier := func(t time.Time) {
		if !t.IsZero() && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	for _, v := range e.Versions {
		if kind.graceStatus != "" && v.Status == kind.graceStatus {
			earlier(v.GraceUntil)
		}
	}
	earlier(e.alertStart(pol))
	earlier(e.nextRemoval())
	if e.pending() != nil && kind.checkReady != nil {
		earlier(e.ActivationCheck)
	}
	if cur := e.current(); cur != nil && cur.Status == statusActive && e.pending() == nil && e.Halted == "" {
		var rotateAt time.Time
		switch {
		case e.overUses():
			rotateAt = e.UpdatedTime
		case e.automated():
			rotateAt = e.nextRotation(pol)
		}
		if !rotateAt.IsZero() && rotateAt.Before(e.NextAttempt) {
			rotateAt = e.NextAttempt
		}
		earlier(rotateAt)
	}
	return at
}

// durationText is the one way the engine shows a duration: Go's duration
// syntax without zero units ("720h", "1h30m", "90s", "0s"), which every
// duration field also accepts on input (as do plain seconds). The Vault CLI
// prints it as it is, so reads, config and docs all look the same.
func durationText(d time.Duration) string {
	s := d.Round(time.Second).String() // "720h0m0s", "1h30m0s", "0s"
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// rotationView is the rotation metadata shown by every read.
func rotationView(e *secretEntry, pol typePolicy, now time.Time) map[string]interface{} {
	out := map[string]interface{}{
		"last_rotated":               formatTime(e.LastRotated),
		"next_rotation":              formatTime(e.nextRotation(pol)),
		"rotation_period":            durationText(e.effectivePeriod(pol)),
		"rotation_schedule":          e.RotationSchedule,
		"alert_threshold":            durationText(pol.AlertThreshold),
		"rotation_status":            e.rotationStatus(pol, now),
		"risk_level":                 pol.RiskLevel,
		"auto_rotate":                e.AutoRotate,
		"disable_automated_rotation": !e.AutoRotate,
		"last_rotation_by":           e.lastRotationActor(),
		"last_rotation_error":        e.LastRotationError,
		"max_uses":                   e.MaxUses,
		"uses":                       e.Uses,
	}
	if e.Halted != "" {
		out["halted"], out["halted_time"] = e.Halted, formatTime(e.HaltedTime)
	}
	if e.RotationFailures > 0 {
		out["rotation_failures"] = e.RotationFailures
		out["last_rotation_error_step"] = e.LastRotationErrorStep
		out["next_attempt"] = formatTime(e.NextAttempt)
	}
	return out
}

// lastRotationActor is whoever made the current version: the creating
// write, a password change or a rotation.
func (e *secretEntry) lastRotationActor() string {
	if cur := e.current(); cur != nil {
		return cur.CreatedBy.DisplayName
	}
	return ""
}
