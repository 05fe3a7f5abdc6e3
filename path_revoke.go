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
		e, err := b.modify(ctx, req.Storage, ref, func(e *secretEntry, cfg *engineConfig, now time.Time) error {
			var err error
			revoked, err = e.revokeLive(k, r, now, cfg)
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
