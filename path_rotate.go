package penguinmails

import (
	"context"
	"fmt"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Bounds on free text recorded in history.
const (
	maxReasonLen     = 512
	maxIncidentIDLen = 128
)

func rotationFields() map[string]*framework.FieldSchema {
	return map[string]*framework.FieldSchema{
		"reason": {Type: framework.TypeString,
			Description: fmt.Sprintf("Why the secret is rotated; kept in the rotation history (at most %d characters).", maxReasonLen)},
		"incident_id": {Type: framework.TypeString,
			Description: "Security incident this rotation responds to, for example INC-2026-001. When set, the history records the trigger as \"event\"."},
	}
}

// rotationFrom reads reason and incident_id. A rotation that names an
// incident is event-triggered; otherwise it is manual.
func rotationFrom(req *logical.Request, d *framework.FieldData) (rotation, error) {
	r := rotation{
		Trigger:    triggerManual,
		Reason:     strings.TrimSpace(d.Get("reason").(string)),
		IncidentID: strings.TrimSpace(d.Get("incident_id").(string)),
		Actor:      actorOf(req),
	}
	if len(r.Reason) > maxReasonLen {
		return r, badInput("reason is too long: at most %d characters", maxReasonLen)
	}
	if len(r.IncidentID) > maxIncidentIDLen {
		return r, badInput("incident_id is too long: at most %d characters", maxIncidentIDLen)
	}
	if r.IncidentID != "" {
		r.Trigger = triggerEvent
	}
	// Only the rotate paths have the field; elsewhere GetOk reports it unset.
	if v, ok := d.GetOk("revoke_previous"); ok {
		r.RevokePrevious = v.(bool)
	}
	return r, nil
}

// revokePreviousField is taken by every path that rotates on request.
func revokePreviousField() *framework.FieldSchema {
	return &framework.FieldSchema{Type: framework.TypeBool,
		Description: "Incident rotation: revoke every version that was valid before this rotation (the replaced one and any " +
			"still in its grace period) at once, in the same change. SSH keys leave authorized_keys, private keys and " +
			"passwords of those versions are destroyed, DKIM selectors move to the records to revoke. Default false."}
}

func pathRotateSecret(b *backend, k *secretKind) *framework.Path {
	p := secretActionPath(b, k, "rotate", b.rotateOne(k),
		"Rotate a "+k.Title+" now: generate a new version and make it current.",
		"Rotate a "+k.Title+" now.",
		"Generates new secret material and stores it as the next version. The previous version "+
			"stays readable with version=N until max_versions pushes it out. The rotation is recorded in the "+
			"history with the reason, the incident_id and who asked for it. With revoke_previous=true every "+
			"version that was valid before is revoked in the same change, and the history records that too.")
	p.Fields["revoke_previous"] = revokePreviousField()
	for name, f := range k.rotateFields {
		p.Fields[name] = f
	}
	return p
}

// secretActionPath builds {type}/{tenant}/{name}/{action}: an update that
// takes reason and incident_id, changes the secret, and so runs on the active
// node.
func secretActionPath(b *backend, k *secretKind, action string, op framework.OperationFunc, summary, synopsis, description string) *framework.Path {
	p := secretSubPath(k, action, rotationFields())
	p.DisplayAttrs = &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: action, OperationSuffix: k.Name}
	p.Operations = map[logical.Operation]framework.OperationHandler{
		logical.UpdateOperation: &framework.PathOperation{
			Callback:                    b.handle(op),
			Summary:                     summary,
			ForwardPerformanceStandby:   true,
			ForwardPerformanceSecondary: true,
		},
	}
	p.HelpSynopsis, p.HelpDescription = synopsis, description
	return p
}

// actionFrom reads what every {type}/{tenant}/{name}/{action} takes: the
// secret, and the reason and incident_id to record.
func actionFrom(k *secretKind, req *logical.Request, d *framework.FieldData) (secretRef, rotation, error) {
	ref, err := refFrom(k, d)
	if err != nil {
		return ref, rotation{}, err
	}
	r, err := rotationFrom(req, d)
	return ref, r, err
}

func (b *backend) rotateOne(k *secretKind) framework.OperationFunc {
	return func(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
		ref, r, err := actionFrom(k, req, d)
		if err != nil {
			return nil, err
		}
		for name := range k.rotateFields {
			if v, ok := d.GetOk(name); ok {
				if r.Supplied == nil {
					r.Supplied = map[string]interface{}{}
				}
				r.Supplied[name] = v
			}
		}
		e, err := b.rotate(ctx, req.Storage, ref, r)
		if err != nil {
			return nil, err
		}
		if e == nil {
			return nil, notFound("no %s at %s", k.Title, ref.path())
		}
		cfg, err := b.config(ctx, req.Storage)
		if err != nil {
			return nil, err
		}
		data := rotationView(e, k.policy(cfg, e.Name), b.now())
		data["version"] = e.CurrentVersion
		data["previous_version"] = rotatedFrom(e)
		if p := e.pending(); p != nil && p.Version != e.CurrentVersion {
			// A staged rotation made p, which awaits activation: the
			// current version still serves until then.
			data["version"], data["previous_version"], data["status"] = p.Version, e.CurrentVersion, p.Status
		}
		data["revoked_versions"] = revokedBy(e, r)
		return &logical.Response{Data: data}, nil
	}
}

// rotatedFrom is the version the latest rotation replaced, from its history
// row: numbers of undone rotations are skipped, so it need not be
// current_version - 1.
func rotatedFrom(e *secretEntry) int {
	for i := len(e.History) - 1; i >= 0; i-- {
		if h := e.History[i]; (h.Operation == "rotate" || h.Operation == "activate") && h.Result == "success" && h.ToVersion == e.CurrentVersion {
			return h.FromVersion
		}
	}
	return e.CurrentVersion - 1
}

// revokedBy lists the versions a rotation with revoke_previous revoked: the
// ones revoked at its own time. Without revoke_previous it is empty.
func revokedBy(e *secretEntry, r rotation) []int {
	if !r.RevokePrevious {
		return []int{}
	}
	return e.revokedAt(e.LastRotated)
}

// kindsNamed resolves the list of types given in field; empty means every
// type. A bad entry is a 400 naming field.
func (b *backend) kindsNamed(field string, names []string) ([]*secretKind, error) {
	if len(names) == 0 {
		return b.sortedKinds(), nil
	}
	var kinds []*secretKind
	seen := map[*secretKind]bool{}
	for _, n := range names {
		k := b.kinds[strings.TrimSpace(n)]
		if k == nil {
			valid := make([]string, 0, len(b.kinds))
			for _, vk := range b.sortedKinds() {
				valid = append(valid, vk.Name)
			}
			return nil, badInput("invalid %s entry %s: must be one of %s", field, quoteShort(n), strings.Join(valid, ", "))
		}
		if !seen[k] { // a type listed twice is still rotated or reported once
			seen[k] = true
			kinds = append(kinds, k)
		}
	}
	return kinds, nil
}
