package penguinmails

import (
	"context"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
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
	// classes, when set, splits the type into policy classes chosen by the
	// secret's name (API keys: one per provider), each with its own
	// defaults and config settings. Without classes the type is one class.
	classes []policyClass
	// paths builds the type's own {name} path (create, read, update, delete)
	// and any extra sub-paths; list, rotate and history paths are shared.
	paths func(b *backend, k *secretKind) []*framework.Path

	// create is the first step of a rotation: it returns the material of
	// the next version, with no side effect anywhere. It sees the current
	// entry so that it can keep what must stay the same, and now, the
	// rotation's own time. It must not change e.
	// supplied holds the rotateFields the caller gave (nil for automatic
	// rotations and jobs).
	create func(ctx context.Context, b *backend, e *secretEntry, cfg *engineConfig, now time.Time, supplied map[string]interface{}) (interface{}, error)
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
	// plain, when set, reports that rotations of e touch no outside system
	// (an SMTP secret without a mail server driver): they finish in one
	// storage write although the type has set and test steps.
	plain func(e *secretEntry) bool
	// test checks that the pending material works where it is used.
	test func(ctx context.Context, b *backend, e *secretEntry, pending *secretVersion) error
	// undo removes a pending credential that will never become current
	// from the outside system (a failed test, a rollback). It must succeed
	// when there is nothing to remove.
	undo func(ctx context.Context, b *backend, e *secretEntry, pending *secretVersion) error
	// endOverlap removes a previous version from the outside system once it
	// has left service (its overlap ended, it was revoked or dropped): a
	// provider key deleted. v carries the version's number and its material
	// as onRevoke left it. It must succeed when the credential is already
	// gone. The worker retries it with backoff (removal.go).
	endOverlap func(ctx context.Context, b *backend, e *secretEntry, v *secretVersion) error
	// needsRemoval, when set, says whether a version holds anything at the
	// outside system to remove (a Postmark token, made and revoked in the
	// provider's console, does not).
	needsRemoval func(v *secretVersion) bool
	// rotateFields are extra fields of the {name}/rotate path: new material
	// that only the caller can supply (a Postmark server token). create gets
	// them as supplied.
	rotateFields map[string]*framework.FieldSchema

	// beforeRead, when set, runs before a read of the current version and
	// returns the entry to show: it may rotate first (an OAuth access token
	// that expires too soon is refreshed) or refuse the read with an error.
	beforeRead func(ctx context.Context, b *backend, s logical.Storage, ref secretRef, e *secretEntry, d *framework.FieldData) (*secretEntry, error)
	// activation, when set, says whether new versions of e wait for
	// activation (activation.go): the rotation stores them pending, and
	// checkReady decides when they become current. activationAt, when set,
	// is the earliest time worth checking (a publication delay).
	activation   func(e *secretEntry, cfg *engineConfig) bool
	checkReady   func(ctx context.Context, b *backend, e *secretEntry, p *secretVersion, cfg *engineConfig, now time.Time) (activationCheck, error)
	activationAt func(e *secretEntry, p *secretVersion, cfg *engineConfig) time.Time
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
	// settings, when set, are the type's own config settings beyond its
	// policy classes (DKIM: activation, resolvers, ...), derived into the
	// config path's fields, reads and help like the class settings.
	settings *typeSettings
	// nameRule describes the {name} segment in help text when
	// checkNameSpelling applies a rule other than the generic identifier
	// rule.
	nameRule string
}

// staged reports whether rotations of this type change an outside system,
// and so run as separate steps with a write-ahead log.
func (k *secretKind) staged() bool { return k.set != nil || k.test != nil }

// stagedFor reports whether rotations of e run as separate steps.
func (k *secretKind) stagedFor(e *secretEntry) bool {
	return k.staged() && (k.plain == nil || !k.plain(e))
}

func (k *secretKind) settingPrefix() string {
	if k.configPrefix != "" {
		return k.configPrefix
	}
	return k.Name
}

// policyClass is a set of secrets of one type that share a rotation policy
// and its config settings ({prefix}_rotation_period, ...).
type policyClass struct {
	// key names the class in the stored config's policies.
	key string
	// prefix names its config settings; title reads well in their help.
	prefix, title string
	defaults      typePolicy
	// manual marks a class whose new material only a person can make (a
	// Postmark server token, made in Postmark's console): it is reported
	// due, but never rotated automatically.
	manual bool
}

// policyClasses lists the type's classes: its own, or one per name.
func (k *secretKind) policyClasses() []policyClass {
	if len(k.classes) > 0 {
		return k.classes
	}
	return []policyClass{{key: k.Name, prefix: k.settingPrefix(), title: k.Title, defaults: k.defaults}}
}

// classOf is the policy class of the secret called name.
func (k *secretKind) classOf(name string) policyClass {
	for _, c := range k.classes {
		if c.prefix == name {
			return c
		}
	}
	return k.policyClasses()[0]
}

// policy is the rotation policy in force under cfg for the type's secret
// called name.
func (k *secretKind) policy(cfg *engineConfig, name string) typePolicy {
	return k.classOf(name).policy(cfg)
}

func (c policyClass) policy(cfg *engineConfig) typePolicy {
	if p, ok := cfg.Policies[c.key]; ok {
		return p
	}
	return c.defaults
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
func (k *secretKind) supersede(e *secretEntry, v *secretVersion, now time.Time, cfg *engineConfig) error {
	grace := k.policy(cfg, e.Name).GracePeriod
	v.StatusTime = now
	switch {
	case k.graceStatus != "" && grace > 0:
		v.Status = k.graceStatus
		v.GraceUntil = now.Add(grace)
	case k.afterGrace != "":
		// A grace period configured to 0 ends at once, and what must not
		// outlive it (a DKIM private key) goes now, not at the next tick.
		v.GraceUntil = now
		return k.endGrace(e, v)
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
		if err := k.endGrace(e, v); err != nil {
			return changed, err
		}
		changed = true
	}
	return changed, nil
}

// endGrace moves one version from its grace status to its final status,
// and queues its removal at the outside system.
func (k *secretKind) endGrace(e *secretEntry, v *secretVersion) error {
	v.Status = k.afterGrace
	v.StatusTime = v.GraceUntil
	if k.onGraceEnd != nil {
		if err := k.onGraceEnd(v); err != nil {
			return err
		}
	}
	return e.queueRemoval(k, v, removeOverlapEnded, v.GraceUntil)
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
