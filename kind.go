package penguinmails

import (
	"context"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
)

// secretKind describes one secret type. Everything a type does differently
// from the others is here: its defaults (from which the config settings,
// their validation and their help are derived), its paths, and the hooks of
// the rotation steps. Versions, rotation, history, the index and jobs are
// shared: entry.go, engine.go, index.go, worker.go, jobs.go.
type secretKind struct {
	// Name is the path prefix and the storage folder: "smtp", "dkim", ...
	Name string
	// Title reads well in help text: "SMTP credential".
	Title string
	// configPrefix names the type's config settings ({prefix}_rotation_period,
	// ...); empty means Name.
	configPrefix string
	// defaults is the type's rotation policy until config changes it. A
	// type with a grace status has a grace_period setting, others do not.
	defaults typePolicy
	// paths builds the type's own {name} path (create, read, update, delete)
	// and any extra sub-paths; list, rotate and history paths are shared.
	paths func(b *backend, k *secretKind) []*framework.Path

	// create is the first step of a rotation: it returns the material of
	// the next version, with no side effect anywhere. It sees the current
	// entry so that it can keep what must stay the same, and now, the
	// rotation's own time. It must not change e.
	create func(ctx context.Context, b *backend, e *secretEntry, cfg *engineConfig, now time.Time) (interface{}, error)
	// The errors of create, set, test, undo and endOverlap reach the 502
	// answer, the history row, last_rotation_error and the plugin log: they
	// must name what failed and never carry a secret value (a key, a token,
	// a response body that echoes one).
	//
	// set makes the pending version's material valid where it is used (a
	// mail server, a provider). Types with no outside system leave it nil,
	// and their rotations finish in one storage write. set may record what
	// the outside system answered (a key id) in pending.Material; it must be
	// safe to call undo on a pending version whose set never ran or ran
	// half way (a crash), using only what create recorded.
	set func(ctx context.Context, b *backend, e *secretEntry, pending *secretVersion) error
	// test checks that the pending material works where it is used.
	test func(ctx context.Context, b *backend, e *secretEntry, pending *secretVersion) error
	// undo removes a pending credential that will never become current
	// from the outside system (a failed test, a rollback). It must succeed
	// when there is nothing to remove.
	undo func(ctx context.Context, b *backend, e *secretEntry, pending *secretVersion) error
	// endOverlap removes a previous version from the outside system when its
	// overlap ends (a provider key deleted). It must succeed when the
	// credential is already gone.
	endOverlap func(ctx context.Context, b *backend, e *secretEntry, v *secretVersion) error

	// onNewVersion, when set, runs after a version v became current, for
	// what the type keeps about every version it ever had (DKIM: the
	// selectors, which are never reused).
	onNewVersion func(e *secretEntry, v *secretVersion) error
	// onRevoke, when set, strips what a revoked version must not keep (a
	// private key) from its material.
	onRevoke func(v *secretVersion) error
	// graceStatus is the status of a superseded version during its overlap;
	// afterGrace is its status once the overlap has ended. Types without an
	// overlap leave graceStatus empty.
	graceStatus string
	afterGrace  string
	// onGraceEnd, when set, strips what must not outlive the overlap (a
	// DKIM private key, for example) from a version's material.
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

// staged reports whether rotations of this type change an outside system,
// and so run as separate steps with a write-ahead log.
func (k *secretKind) staged() bool { return k.set != nil || k.test != nil }

func (k *secretKind) settingPrefix() string {
	if k.configPrefix != "" {
		return k.configPrefix
	}
	return k.Name
}

// policy is the type's rotation policy in force under cfg.
func (k *secretKind) policy(cfg *engineConfig) typePolicy {
	if p, ok := cfg.Policies[k.Name]; ok {
		return p
	}
	return k.defaults
}

// checkName validates the {name} segment of {type}/{tenant}/{name}. The
// name is stored as given: it must already be the one accepted spelling.
func (k *secretKind) checkName(tenant, name string) error {
	if k.checkNameSpelling != nil {
		return k.checkNameSpelling(tenant, name)
	}
	return validateIdentifier("name", name)
}

// supersede moves the previously current version out of service: at once, or
// after the type's overlap when it has one.
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

// endGraces moves versions whose overlap has passed to their final status.
// It reports whether anything changed. Reads call it on their copy so that
// what they show follows the clock; the worker persists it.
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

// stageOf names where a version is in its life, the same words for every
// type: pending (created, not yet finished), current, previous (inside its
// overlap), then expired, revoked or retired.
func (k *secretKind) stageOf(v *secretVersion) string {
	switch {
	case v.Status == statusPending:
		return stagePending
	case v.Status == statusActive:
		return stageCurrent
	case k.graceStatus != "" && v.Status == k.graceStatus:
		return stagePrevious
	case v.Status == statusRevoked:
		return statusRevoked
	case v.Status == statusExpired:
		return statusExpired
	default:
		return stageRetired
	}
}

// Version stages (see stageOf).
const (
	stagePending  = "pending"
	stageCurrent  = "current"
	stagePrevious = "previous"
	stageRetired  = "retired"
)
