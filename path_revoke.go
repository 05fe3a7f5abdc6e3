package penguinmails

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// pathRevokeSecret builds {type}/{tenant}/{name}/revoke for the types whose
// secretKind sets revocable. Revoking takes every version that is still
// accepted somewhere (active, or inside its grace period) out of service at
// once; only the next rotation makes the secret usable again.
func pathRevokeSecret(b *backend, k *secretKind) *framework.Path {
	p := secretActionPath(b, k, "revoke", b.revokeOne(k),
		"Revoke every valid version of a "+k.Title+" now, without grace.",
		"Revoke a "+k.Title+" immediately.",
		"Marks the active version and any version inside its grace period as revoked, with no grace. "+
			"Nothing of the secret is valid until the next rotate, which makes a new active version. The revocation is "+
			"recorded in the history with the reason, the incident_id and who asked for it.")
	p.Fields["reason"].Description = fmt.Sprintf("Why the secret is revoked; required, kept in the history (at most %d characters).", maxReasonLen)
	p.Fields["incident_id"].Description = "Security incident this revocation responds to, for example INC-2026-001. When set, the history records the trigger as \"event\"."
	return p
}

func (b *backend) revokeOne(k *secretKind) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		ref, r, err := actionFrom(k, req, d)
		if err != nil {
			return nil, err
		}
		if r.Reason == "" {
			return nil, badInput("reason is required: say why %s is revoked", ref.path())
		}
		var revoked []int
		e, err := b.modifyStored(ctx, req.Storage, k, ref.tenant, ref.name, func(e *secretEntry, _ *engineConfig, now time.Time) error {
			var err error
			revoked, err = e.revokeLive(k, r, now)
			return err
		})
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, notFound("no %s at %s", k.Title, ref.path())
		}
		resp := &logical.Response{Data: map[string]interface{}{
			"status": statusRevoked, "current_version": e.CurrentVersion, "revoked_versions": revoked,
		}}
		if len(revoked) == 0 {
			resp.AddWarning(ref.path() + " had no valid version; nothing was revoked")
			return resp, nil
		}
		b.emit(ctx, "revoke", e, "trigger", r.Trigger, "version", fmt.Sprint(e.CurrentVersion))
		return resp, nil
	}
}

// revokeLive revokes every version that is active or in its grace period and
// records the revocation. It returns the revoked version numbers; when there
// were none it changes nothing.
func (e *secretEntry) revokeLive(k *secretKind, r rotation, now time.Time) ([]int, error) {
	return e.revokeVersions(k, e.liveVersions(k), r, now)
}

// liveVersions lists the versions that are valid now: active, or inside
// their grace period.
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
func (e *secretEntry) revokeVersions(k *secretKind, versions []int, r rotation, now time.Time) ([]int, error) {
	revoked := []int{}
	for _, n := range versions {
		v := e.version(n)
		if v == nil {
			continue // trimmed by the rotation that asked for this
		}
		v.Status, v.StatusTime = statusRevoked, now
		// The grace period no longer applies; left set, it would also keep
		// the version scheduled.
		v.GraceUntil = time.Time{}
		if k.onRevoke != nil {
			if err := k.onRevoke(v); err != nil {
				return nil, err
			}
		}
		revoked = append(revoked, v.Version)
	}
	if len(revoked) == 0 {
		return revoked, nil
	}
	e.UpdatedTime = now
	e.record(historyEntry{
		Time: now, Operation: "revoke", Trigger: r.Trigger, Reason: r.Reason, IncidentID: r.IncidentID,
		Actor: r.Actor, Result: "success", FromVersion: revoked[0], ToVersion: revoked[len(revoked)-1],
	})
	return revoked, nil
}
