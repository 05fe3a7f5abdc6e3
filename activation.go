package penguinmails

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// Staged activation. A type whose new material must be visible somewhere
// before it may be used (a DKIM key's DNS record) rotates in two moves: the
// rotation stores the new version as pending (listed for publication, never
// used), and activation, once the type's check passes, finishes the
// rotation: the version becomes current and the one it replaces enters its
// overlap only then. The worker re-checks pending versions with backoff;
// an admin can activate at once. The pending version is no rotation in
// flight: it has no WAL, and Vault's rollback leaves it alone.

// Backoff of activation checks: a minute, doubling to fifteen.
const (
	activationRetryBase = time.Minute
	activationRetryCap  = 15 * time.Minute
)

func activationDelay(checks int) time.Duration {
	return backoff(checks, activationRetryBase, activationRetryCap)
}

// awaitsActivation reports whether new versions of e wait for activation.
func (k *secretKind) awaitsActivation(e *secretEntry, cfg *engineConfig) bool {
	return k.activation != nil && k.activation(e, cfg)
}

// stageRotation stores material as the pending version, to be activated:
// the staging half of a rotation. With revoke_previous the versions valid
// before are revoked now, in the same change: an incident does not wait for
// DNS.
func (e *secretEntry) stageRotation(material interface{}, kind *secretKind, cfg *engineConfig, r rotation, now time.Time) error {
	live := e.liveVersions(kind)
	p, err := e.addPending(material, r.Actor, now)
	if err != nil {
		return err
	}
	e.ActivationChecks, e.ActivationCheck, e.ActivationReported = 0, kind.firstActivationCheck(e, p, cfg, now), false
	if r.JobID != "" {
		e.LastJob = r.JobID
	}
	e.clearFailures()
	e.record(historyEntry{Time: now, Operation: "rotate", Trigger: r.Trigger, Reason: r.Reason, IncidentID: r.IncidentID,
		Actor: r.Actor, Result: "pending", JobID: r.JobID, NoIncident: r.NoIncident, FromVersion: e.CurrentVersion,
		ToVersion: p.Version, RevokePrevious: r.RevokePrevious}, cfg.HistoryLimit)
	if r.RevokePrevious {
		_, err = e.revokeVersions(kind, live, r, now, cfg)
	}
	return err
}

func (k *secretKind) firstActivationCheck(e *secretEntry, p *secretVersion, cfg *engineConfig, now time.Time) time.Time {
	if k.activationAt != nil {
		if at := k.activationAt(e, p, cfg); at.After(now) {
			return at
		}
	}
	return now
}

// activationCheck is one look at whether the pending version may be used.
type activationCheck struct {
	ready bool
	// why says what was seen when not ready (a record missing at a
	// resolver, a mismatch); it carries no secret.
	why string
	// deadline is when a pending version still not ready is reported.
	deadline time.Time
}

// activationProbe is one activation check of a pending version, made
// before the secret's lock is taken.
type activationProbe struct {
	version int
	check   activationCheck
	err     error
}

// probeActivation runs the check of ref's pending version when it is due,
// on the entry as stored, without the secret's lock: a check can take
// seconds (a resolver that never answers costs its timeout), and no
// request on the secret waits for it. checkActivation applies the result
// under the lock. nil means no check was due.
func (b *backend) probeActivation(ctx context.Context, s logical.Storage, ref secretRef, cfg *engineConfig) *activationProbe {
	e, _, err := loadSecretChecked(ctx, s, ref)
	if err != nil || e == nil {
		return nil // upkeep reports it under the lock
	}
	now := b.now()
	p := e.pending()
	if p == nil || ref.kind.checkReady == nil || now.Before(e.ActivationCheck) {
		return nil
	}
	probe := &activationProbe{version: p.Version}
	probe.err = callStep(ctx, func(ctx context.Context) error {
		var err error
		probe.check, err = ref.kind.checkReady(ctx, b, e, p, cfg, now)
		return err
	})
	return probe
}

// checkActivation applies probe, the check of e's pending version made
// without the lock, and activates the version when it is ready. A check
// that fell due, or a version that was staged, after the probe is looked
// at a minute later. It reports whether e changed.
func (b *backend) checkActivation(ctx context.Context, e *secretEntry, kind *secretKind, cfg *engineConfig, now time.Time, probe *activationProbe) (bool, error) {
	p := e.pending()
	if p == nil || kind.checkReady == nil || now.Before(e.ActivationCheck) {
		return false, nil
	}
	if probe == nil || probe.version != p.Version {
		e.ActivationCheck = now.Add(activationRetryBase)
		return true, nil
	}
	c, err := probe.check, probe.err
	if err == nil && c.ready {
		r := rotation{Operation: "activate", Trigger: triggerTime, Reason: "activated: " + c.why, Actor: schedulerActor}
		if err := b.activate(ctx, e, kind, cfg, r, now); err != nil {
			return false, err
		}
		return true, nil
	}
	if err != nil {
		c.why = err.Error()
	}
	e.ActivationChecks++
	e.ActivationCheck = now.Add(activationDelay(e.ActivationChecks))
	if !c.deadline.IsZero() && !now.Before(c.deadline) && !e.ActivationReported {
		e.ActivationReported = true
		e.LastRotationError = fmt.Sprintf("version %d is still not ready for activation after %s: %s",
			p.Version, c.deadline.Sub(p.CreatedTime).Round(time.Minute), c.why)
		e.LastRotationErrorTime, e.LastRotationErrorStep = now, stepActivate
		b.emit(ctx, "activation-overdue", e, "version", fmt.Sprint(p.Version))
		b.Logger().Warn("a pending version is overdue for activation", "secret", e.Kind+"/"+e.Tenant+"/"+e.Name,
			"version", p.Version, "why", c.why)
	}
	return true, nil
}

// activate finishes the staged rotation: the pending version becomes
// current.
func (b *backend) activate(ctx context.Context, e *secretEntry, kind *secretKind, cfg *engineConfig, r rotation, now time.Time) error {
	p := e.pending()
	if p == nil {
		return nil
	}
	if err := e.finishRotation(p.Version, kind, cfg, r, now); err != nil {
		return err
	}
	e.ActivationChecks, e.ActivationCheck, e.ActivationReported = 0, time.Time{}, false
	b.emit(ctx, "activate", e, "version", fmt.Sprint(e.CurrentVersion))
	return nil
}

// stepActivate names the activation in last_rotation_error_step.
const stepActivate = "activate"

// stageFirst stores a secret's first material as pending: with nothing to
// overlap, it is the current version from the start, unusable until it is
// activated.
func (e *secretEntry) stageFirst(material interface{}, kind *secretKind, cfg *engineConfig, by actor, now time.Time) error {
	p, err := e.addPending(material, by, now)
	if err != nil {
		return err
	}
	e.CurrentVersion = p.Version
	e.ActivationChecks, e.ActivationCheck, e.ActivationReported = 0, kind.firstActivationCheck(e, p, cfg, now), false
	return nil
}
