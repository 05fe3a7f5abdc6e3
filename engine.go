package penguinmails

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/mitchellh/mapstructure"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/inputerr"
)

// The rotation engine. Every rotation of every type runs the same steps:
//
//	create  the new material, with no side effect (secretKind.create)
//	set     make it valid where it is used (secretKind.set)
//	test    check that it works there (secretKind.test)
//	finish  make it current; the version it replaces enters its overlap
//
// Types with no outside system have no set or test, and their rotation is
// one storage write. For the others the pending version is stored, under a
// write-ahead log entry (framework.PutWAL), before set changes anything
// outside, so that after a crash between any two steps Vault's rollback
// (walRollback) either finishes the rotation or undoes it: one current
// credential, and none outside that Vault does not know about.

// Step names, as recorded in history and in last_rotation_error_step.
const (
	stepCreate = "create"
	stepSet    = "set"
	stepTest   = "test"
	stepFinish = "finish"
	stepUndo   = "undo"
)

// walKindRotation is the WAL kind of a staged rotation in flight.
const walKindRotation = "rotation"

// walRollbackMinAge leaves a staged rotation this long before the rollback
// takes it over: longer than any step may run (stepTimeout).
const walRollbackMinAge = 2 * time.Minute

// stepTimeout bounds one call into an outside system. A variable only so
// that tests can shorten it.
var stepTimeout = 30 * time.Second

// rotationWAL names the secret and the pending version a staged rotation
// is making. It holds no secret material: that is in the entry.
type rotationWAL struct {
	Kind    string `mapstructure:"kind" json:"kind"`
	Tenant  string `mapstructure:"tenant" json:"tenant"`
	Name    string `mapstructure:"name" json:"name"`
	Version int    `mapstructure:"version" json:"version"`
}

// rotation describes why and by whom a rotation was asked for.
type rotation struct {
	Trigger    string
	Reason     string
	IncidentID string
	Actor      actor
	// RevokePrevious revokes, in the same change, every version that was
	// valid before the rotation (the superseded one and any in overlap).
	RevokePrevious bool
	// JobID is the job this rotation belongs to; a secret whose last_job is
	// already JobID is skipped, so a resumed job rotates nothing twice.
	JobID string
	// NoIncident flags a bulk or tenant rotation without an incident_id.
	NoIncident bool
	// Operation is the history row's operation; empty means "rotate".
	Operation string
	// Supplied is new material the caller gave with the rotation (the
	// type's rotateFields).
	Supplied map[string]interface{}
	// only, when set, is checked under the secret's lock: a non-empty answer
	// skips the secret with that reason (a job's status filter).
	only func(e *secretEntry, pol typePolicy, now time.Time) string
}

// skipped is returned by rotate when the secret was left alone on purpose.
type skipped struct{ why string }

func (s *skipped) Error() string { return "skipped: " + s.why }

// inProgress answers a rotation of a secret whose earlier rotation was
// interrupted and is not settled yet: a 409. Jobs retry such a secret after
// the rollback has had its turn.
type inProgress struct{ msg string }

func (e *inProgress) Error() string { return e.msg }
func (e *inProgress) Code() int     { return 409 }

// errCrash is returned by a test's crash hook: the engine stops where it is,
// as if the process had died, and leaves the rest to the rollback.
var errCrash = errors.New("simulated crash")

// rotate runs one rotation of the secret at ref through every step, under
// the secret's lock. It returns (nil, nil) when the secret does not exist.
func (b *backend) rotate(ctx context.Context, s logical.Storage, ref secretRef, r rotation) (*secretEntry, error) {
	return b.withEntry(ctx, s, ref, func(e *secretEntry, cfg *engineConfig, now time.Time) (*secretEntry, error) {
		return b.rotateLocked(ctx, s, ref, e, cfg, now, r)
	})
}

// withEntry runs fn on the secret at ref under its lock, loaded with what
// the clock and config imply, with the config and the one now fn must use.
// A missing secret is (nil, nil) and fn does not run.
func (b *backend) withEntry(ctx context.Context, s logical.Storage, ref secretRef,
	fn func(e *secretEntry, cfg *engineConfig, now time.Time) (*secretEntry, error)) (*secretEntry, error) {
	lock := b.lockFor(ref.key())
	lock.Lock()
	defer lock.Unlock()

	cfg, err := b.config(ctx, s)
	if err != nil {
		return nil, err
	}
	now := b.now()
	e, err := b.loadDerived(ctx, s, ref, cfg, now)
	if err != nil || e == nil {
		return nil, err
	}
	return fn(e, cfg, now)
}

// rotateLocked is rotate with the secret's lock held.
func (b *backend) rotateLocked(ctx context.Context, s logical.Storage, ref secretRef, e *secretEntry, cfg *engineConfig, now time.Time, r rotation) (*secretEntry, error) {
	if r.JobID != "" && e.LastJob == r.JobID {
		return e, &skipped{"already rotated by this job"}
	}
	// Only a caller with the new material rotates a manual class; jobs and
	// the scheduler pass it by.
	if c := ref.kind.classOf(e.Name); c.manual && (r.JobID != "" || r.Trigger == triggerTime || r.Trigger == triggerThreshold) {
		return e, &skipped{fmt.Sprintf("a %s is made by hand in the provider's console: rotate it with the new one", c.title)}
	}
	if r.only != nil {
		if why := r.only(e, ref.kind.policy(cfg, e.Name), now); why != "" {
			return e, &skipped{why}
		}
	}
	if p := e.pending(); p != nil && ref.kind.checkReady != nil && !p.Set {
		if r.JobID != "" {
			return e, &skipped{fmt.Sprintf("version %d awaits activation", p.Version)}
		}
		return nil, &inProgress{fmt.Sprintf("%s has version %d awaiting activation since %s; activate it, or wait until it is activated, "+
			"before rotating again", ref.path(), p.Version, formatTime(p.CreatedTime))}
	}
	if p := e.pending(); p != nil {
		return nil, &inProgress{fmt.Sprintf("%s has a rotation in progress (pending version %d since %s); "+
			"Vault's rollback finishes or undoes it within %s", ref.path(), p.Version, formatTime(p.CreatedTime), walRollbackMinAge)}
	}
	out, err := b.runSteps(ctx, s, e, ref.kind, cfg, r, now)
	if err != nil {
		if !errors.Is(err, errCrash) {
			b.emit(ctx, "rotate-fail", e, "trigger", r.Trigger)
		}
		return nil, err
	}
	// What the rotation took out of service at once (revoke_previous, or an
	// overlap of 0) is removed at the outside system now; a failure stays
	// queued for the worker.
	if b.removeDue(ctx, out, ref.kind, cfg, now) {
		if err := b.store(ctx, s, out, ref.kind, cfg, now); err != nil {
			return nil, err
		}
	}
	b.emit(ctx, "rotate", out, "trigger", r.Trigger, "version", fmt.Sprint(out.CurrentVersion))
	if r.RevokePrevious {
		b.emit(ctx, "revoke", out, "trigger", r.Trigger, "version", fmt.Sprint(out.CurrentVersion))
	}
	return out, nil
}

// runSteps is create, set, test, finish on e, which the caller loaded under
// the secret's lock.
func (b *backend) runSteps(ctx context.Context, s logical.Storage, e *secretEntry, kind *secretKind, cfg *engineConfig, r rotation, now time.Time) (*secretEntry, error) {
	material, err := kind.create(ctx, b, e, cfg, now, r.Supplied)
	var busy *inProgress
	if _, bad := inputerr.As(err); bad || errors.As(err, &busy) {
		return nil, err // the caller's to fix, or a wait: no failed rotation
	}
	if err != nil {
		return nil, b.failed(ctx, s, e, kind, r, stepCreate, err)
	}
	if kind.awaitsActivation(e, cfg) {
		if err := e.stageRotation(material, kind, cfg, r, now); err != nil {
			return nil, err
		}
		return e, b.store(ctx, s, e, kind, cfg, now)
	}
	if !kind.stagedFor(e) {
		if err := e.rotateTo(material, kind, cfg, r, now); err != nil {
			return nil, err
		}
		return e, b.store(ctx, s, e, kind, cfg, now)
	}

	pending, err := e.addPending(material, r.Actor, now)
	if err != nil {
		return nil, err
	}
	n := pending.Version
	walID, err := framework.PutWAL(ctx, s, walKindRotation, &rotationWAL{Kind: kind.Name, Tenant: e.Tenant, Name: e.Name, Version: n})
	if err != nil {
		return nil, err
	}
	if err := b.store(ctx, s, e, kind, cfg, now); err != nil {
		return nil, err // the WAL finds no pending version and is dropped
	}
	if err := b.crashPoint(stepCreate); err != nil {
		return nil, err
	}

	if kind.set != nil {
		if err := callStep(ctx, func(ctx context.Context) error { return kind.set(ctx, b, e, e.version(n)) }); err != nil {
			if ctx.Err() != nil {
				return nil, interrupted(ctx, kind, e, stepSet)
			}
			if errors.Is(err, context.DeadlineExceeded) {
				// The outside system may still act on the call: undoing now
				// could race it. The rollback takes over after it settles.
				return nil, logical.CodedError(504, fmt.Sprintf("%s step of %s/%s/%s timed out after %s; Vault's rollback finishes or undoes the rotation",
					stepSet, kind.Name, e.Tenant, e.Name, stepTimeout))
			}
			return nil, b.abandon(ctx, s, e, kind, cfg, r, stepSet, err, walID)
		}
		e.version(n).Set = true
		if err := b.store(ctx, s, e, kind, cfg, now); err != nil {
			return nil, err
		}
		if err := b.crashPoint(stepSet); err != nil {
			return nil, err
		}
	}
	if kind.test != nil {
		if err := callStep(ctx, func(ctx context.Context) error { return kind.test(ctx, b, e, e.version(n)) }); err != nil {
			if ctx.Err() != nil {
				return nil, interrupted(ctx, kind, e, stepTest)
			}
			return nil, b.abandon(ctx, s, e, kind, cfg, r, stepTest, err, walID)
		}
		if err := b.crashPoint(stepTest); err != nil {
			return nil, err
		}
	}

	if err := e.finishRotation(n, kind, cfg, r, now); err != nil {
		return nil, err
	}
	if err := b.store(ctx, s, e, kind, cfg, now); err != nil {
		return nil, err
	}
	if err := b.crashPoint(stepFinish); err != nil {
		return nil, err
	}
	return e, framework.DeleteWAL(ctx, s, walID)
}

// interrupted is the error of a rotation whose caller went away (a request
// cancelled, the worker stopped by a seal or step-down) during a step. It is
// no failure of the outside system, and undoing now could race a call it
// may still act on: the pending version stays under its WAL, and Vault's
// rollback finishes or undoes it.
func interrupted(ctx context.Context, kind *secretKind, e *secretEntry, step string) error {
	return fmt.Errorf("rotation of %s/%s/%s interrupted at the %s step (%w); Vault's rollback finishes or undoes it",
		kind.Name, e.Tenant, e.Name, step, ctx.Err())
}

// callStep runs one call into an outside system with its own deadline.
func callStep(ctx context.Context, fn func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("step panicked")
			}
		}()
		done <- fn(ctx)
	}()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		// A hook that ignores its context is left to finish on its own.
		return ctx.Err()
	}
}

// crashPoint lets a test stop the engine between two steps.
func (b *backend) crashPoint(step string) error {
	if b.testCrashAfter != nil {
		return b.testCrashAfter(step)
	}
	return nil
}

// rotateTo makes material the next version at once and records it as a
// rotation: the finish of a rotation with no outside system, and the writes
// that replace a key with caller-chosen parameters (a DKIM key_type).
func (e *secretEntry) rotateTo(material interface{}, kind *secretKind, cfg *engineConfig, r rotation, now time.Time) error {
	v, err := e.addPending(material, r.Actor, now)
	if err != nil {
		return err
	}
	return e.finishRotation(v.Version, kind, cfg, r, now)
}

// finishRotation is the finish step: pending version n becomes current and
// the rotation is recorded; with RevokePrevious every version valid before
// is revoked in the same change.
func (e *secretEntry) finishRotation(n int, kind *secretKind, cfg *engineConfig, r rotation, now time.Time) error {
	from := e.CurrentVersion
	// Taken before the new version supersedes the current one, which may
	// expire it at once (SMTP) or move it into its overlap (SSH, DKIM).
	live := e.liveVersions(kind)
	if err := e.promote(n, kind, cfg, now); err != nil {
		return err
	}
	e.LastRotated = now
	e.clearFailures()
	e.Uses = 0
	if r.JobID != "" {
		e.LastJob = r.JobID
	}
	op := r.Operation
	if op == "" {
		op = "rotate"
	}
	e.record(historyEntry{
		Time: now, Operation: op, Trigger: r.Trigger, Reason: r.Reason,
		IncidentID: r.IncidentID, Actor: r.Actor, Result: "success", JobID: r.JobID, NoIncident: r.NoIncident,
		FromVersion: from, ToVersion: e.CurrentVersion, RevokePrevious: r.RevokePrevious,
	}, cfg.HistoryLimit)
	if !r.RevokePrevious {
		return nil
	}
	_, err := e.revokeVersions(kind, live, r, now, cfg)
	return err
}

// haltError is a step failure that retrying cannot fix (an OAuth grant the
// provider no longer honours): automatic rotation stops, in state, until a
// person acts and a new version ends it.
type haltError struct {
	state string
	err   error
}

func (h *haltError) Error() string { return h.state + ": " + h.err.Error() }
func (h *haltError) Unwrap() error { return h.err }

// retryHinter is an error that knows when a retry may succeed (a provider's
// Retry-After).
type retryHinter interface{ RetryDelay() time.Duration }

func (e *secretEntry) clearFailures() {
	e.Halted, e.HaltedTime = "", time.Time{}
	e.LastRotationError, e.LastRotationErrorTime, e.LastRotationErrorStep = "", time.Time{}, ""
	e.RotationFailures, e.NextAttempt = 0, time.Time{}
}

// abandon handles a failed set or test: the pending credential is removed
// from the outside system and from the entry, and the failure recorded. When
// undo fails too, the pending version and the WAL stay for the rollback.
func (b *backend) abandon(ctx context.Context, s logical.Storage, e *secretEntry, kind *secretKind, cfg *engineConfig,
	r rotation, step string, stepErr error, walID string) error {
	if kind.undo != nil {
		p := e.pending()
		if err := callStep(ctx, func(ctx context.Context) error { return kind.undo(ctx, b, e, p) }); err != nil {
			b.Logger().Warn("undo of a failed rotation failed; the rollback retries it",
				"secret", kind.Name+"/"+e.Tenant+"/"+e.Name, "step", step, "error", err)
			return stepError(kind, e, step, stepErr)
		}
	}
	e.dropPending()
	if err := b.failed(ctx, s, e, kind, r, step, stepErr); err != nil && !isStepError(err) {
		return err
	}
	if err := framework.DeleteWAL(ctx, s, walID); err != nil {
		return err
	}
	return stepError(kind, e, step, stepErr)
}

// failed records a failed step on e (which must hold nothing of the failed
// attempt) and stores it: the error for reads, one history row per run of
// failures, and the backoff of the next automatic attempt.
func (b *backend) failed(ctx context.Context, s logical.Storage, e *secretEntry, kind *secretKind, r rotation, step string, stepErr error) error {
	cfg, err := b.config(ctx, s)
	if err != nil {
		return err
	}
	now := b.now()
	e.noteFailure(r, step, stepErr, now, cfg)
	var h *haltError
	if errors.As(stepErr, &h) {
		e.Halted, e.HaltedTime = h.state, now
	}
	if err := b.store(ctx, s, e, kind, cfg, now); err != nil {
		return err
	}
	if h != nil {
		b.emit(ctx, "halted", e, "state", h.state)
	}
	b.Logger().Warn("rotation failed", "secret", kind.Name+"/"+e.Tenant+"/"+e.Name, "trigger", r.Trigger, "step", step,
		"failures", e.RotationFailures, "next_attempt", formatTime(e.NextAttempt), "error", stepErr)
	return stepError(kind, e, step, stepErr)
}

// noteFailure records a failed rotation. Consecutive failures share one
// history row (the latest error and time), so that retries cannot push real
// rotations out of the history.
func (e *secretEntry) noteFailure(r rotation, step string, err error, now time.Time, cfg *engineConfig) {
	e.LastRotationError, e.LastRotationErrorTime, e.LastRotationErrorStep = err.Error(), now, step
	e.RotationFailures++
	e.NextAttempt = now.Add(retryDelay(e.RotationFailures))
	var hint retryHinter
	if errors.As(err, &hint) && now.Add(hint.RetryDelay()).After(e.NextAttempt) {
		e.NextAttempt = now.Add(hint.RetryDelay()) // the provider asked for longer
	}
	row := historyEntry{
		Time: now, Operation: "rotate", Trigger: r.Trigger, Reason: r.Reason, IncidentID: r.IncidentID, Actor: r.Actor,
		Result: "failed", Step: step, JobID: r.JobID, FromVersion: e.CurrentVersion, ToVersion: e.CurrentVersion, Error: err.Error(),
	}
	if n := len(e.History); n > 0 && e.History[n-1].Operation == "rotate" && e.History[n-1].Result == "failed" {
		e.History[n-1] = row
		return
	}
	e.record(row, cfg.HistoryLimit)
}

func stepError(kind *secretKind, e *secretEntry, step string, err error) error {
	return logical.CodedError(502, fmt.Sprintf("rotation of %s/%s/%s failed at the %s step: %v; the current version is unchanged",
		kind.Name, e.Tenant, e.Name, step, err))
}

func isStepError(err error) bool {
	var coded logical.HTTPCodedError
	return errors.As(err, &coded) && coded.Code() == 502
}

// walRollback is the backend's WALRollback: Vault calls it for every WAL
// entry older than walRollbackMinAge, on the active node, until it returns
// nil. A rotation WAL is settled from what the entry shows: a pending
// version whose set finished is tested and finished, any other is undone.
func (b *backend) walRollback(ctx context.Context, req *logical.Request, kind string, data interface{}) (err error) {
	defer b.recoverBackground("wal rollback", &err)
	if kind != walKindRotation {
		return fmt.Errorf("unknown WAL kind %q", kind)
	}
	var w rotationWAL
	if err := mapstructure.Decode(data, &w); err != nil {
		return fmt.Errorf("decoding rotation WAL: %w", err)
	}
	return b.settleRotation(ctx, req.Storage, w)
}

func (b *backend) settleRotation(ctx context.Context, s logical.Storage, w rotationWAL) error {
	k := b.kinds[w.Kind]
	if k == nil {
		return nil // a type this version does not serve has nothing to settle
	}
	ref := secretRef{kind: k, tenant: w.Tenant, name: w.Name}
	_, err := b.withEntry(ctx, s, ref, func(e *secretEntry, cfg *engineConfig, now time.Time) (*secretEntry, error) {
		return nil, b.settleLocked(ctx, s, ref, e, cfg, now, w.Version)
	})
	return err
}

// settleLocked is settleRotation with the secret's lock held.
func (b *backend) settleLocked(ctx context.Context, s logical.Storage, ref secretRef, e *secretEntry, cfg *engineConfig, now time.Time, version int) error {
	k := ref.kind
	p := e.version(version)
	if p == nil || p.Status != statusPending {
		return nil // finished, or dropped, before the crash
	}
	r := rotation{Trigger: triggerTime, Reason: "finished by Vault's rollback after an interrupted rotation", Actor: rollbackActor}
	// A write (or an OAuth exchange) made newer material current while the
	// rotation was interrupted: finishing would put the older pending
	// version over what the person wrote. It is undone instead, and that is
	// no failure of the secret.
	superseded := version < e.CurrentVersion
	if p.Set && !superseded && (k.test == nil || callStep(ctx, func(ctx context.Context) error { return k.test(ctx, b, e, p) }) == nil) {
		if err := e.finishRotation(version, k, cfg, r, now); err != nil {
			return err
		}
		return b.store(ctx, s, e, k, cfg, now)
	}
	if k.undo != nil {
		if err := callStep(ctx, func(ctx context.Context) error { return k.undo(ctx, b, e, p) }); err != nil {
			return fmt.Errorf("undo of pending version %d of %s: %w", version, ref.path(), err)
		}
	}
	e.dropPending()
	if superseded {
		return b.store(ctx, s, e, k, cfg, now)
	}
	r.Reason = "undone by Vault's rollback after an interrupted rotation"
	e.noteFailure(r, stepUndo, errors.New("rotation interrupted before it finished; pending version undone"), now, cfg)
	return b.store(ctx, s, e, k, cfg, now)
}

// rollbackActor is recorded for changes made by Vault's WAL rollback.
var rollbackActor = actor{DisplayName: "penguinmails-rollback"}

// modify applies change to one stored secret under its lock and stores it
// with one Put (and its index keys). Overlaps that have ended are closed
// first, so change sees the statuses the clock implies. When change fails
// nothing is saved. It returns (nil, nil) when the secret does not exist.
func (b *backend) modify(ctx context.Context, s logical.Storage, ref secretRef,
	change func(e *secretEntry, cfg *engineConfig, now time.Time) error) (*secretEntry, error) {
	return b.withEntry(ctx, s, ref, func(e *secretEntry, cfg *engineConfig, now time.Time) (*secretEntry, error) {
		if err := change(e, cfg, now); err != nil {
			return nil, err
		}
		return e, b.store(ctx, s, e, ref.kind, cfg, now)
	})
}

// revokeLive revokes every version that is active or in its overlap and
// records the revocation. It returns the revoked version numbers; when there
// were none it changes nothing.
func (e *secretEntry) revokeLive(k *secretKind, r rotation, now time.Time, cfg *engineConfig) ([]int, error) {
	return e.revokeVersions(k, e.liveVersions(k), r, now, cfg)
}

// liveVersions lists the versions that are valid now: active, or inside
// their overlap.
func (e *secretEntry) liveVersions(k *secretKind) []int {
	live := []int{}
	for _, v := range e.Versions {
		if v.Status == statusActive || (k.graceStatus != "" && v.Status == k.graceStatus) {
			live = append(live, v.Version)
		}
	}
	return live
}

// revokeVersions revokes the listed versions that are still kept, through
// the type's onRevoke (which destroys private material), and records one
// revocation. It is the one revocation of the revoke path and of a rotation
// with revoke_previous.
func (e *secretEntry) revokeVersions(k *secretKind, versions []int, r rotation, now time.Time, cfg *engineConfig) ([]int, error) {
	revoked := []int{}
	for _, n := range versions {
		v := e.version(n)
		if v == nil {
			continue // trimmed by the rotation that asked for this
		}
		v.Status, v.StatusTime = statusRevoked, now
		// The overlap no longer applies; left set, it would also keep the
		// version scheduled.
		v.GraceUntil = time.Time{}
		if k.onRevoke != nil {
			if err := k.onRevoke(v); err != nil {
				return nil, err
			}
		}
		if err := e.queueRemoval(k, v, removeRevoked, now); err != nil {
			return nil, err
		}
		revoked = append(revoked, v.Version)
	}
	if len(revoked) == 0 {
		return revoked, nil
	}
	e.UpdatedTime = now
	e.record(historyEntry{
		Time: now, Operation: "revoke", Trigger: r.Trigger, Reason: r.Reason, IncidentID: r.IncidentID,
		Actor: r.Actor, Result: "success", JobID: r.JobID, FromVersion: revoked[0], ToVersion: revoked[len(revoked)-1],
	}, cfg.HistoryLimit)
	return revoked, nil
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
