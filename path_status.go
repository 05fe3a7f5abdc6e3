package penguinmails

import (
	"context"
	"sort"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// pathRotationReport answers "what is overdue?" across the mount: every
// secret whose rotation is overdue or due soon, judged from stored timestamps
// at the time of the request.
func pathRotationReport(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "rotation-report",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "read", OperationSuffix: "rotation-report"},
		Fields: map[string]*framework.FieldSchema{
			"types": {Type: framework.TypeCommaStringSlice, Query: true,
				Description: "Secret types to report on (for example smtp,dkim). Empty: every type."},
			"tenant": {Type: framework.TypeString, Query: true,
				Description: "Only this tenant. Empty: every tenant."},
		},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback: b.handle(b.rotationReport),
				Summary:  "List secrets whose rotation is overdue or due soon.",
			},
		},
		HelpSynopsis: "Secrets whose rotation is overdue or due soon.",
		HelpDescription: "Reads every secret of the mount (or of the given types and tenant) and lists those whose " +
			"rotation_status is overdue or due_soon, with last_rotated, next_rotation and auto_rotate, oldest " +
			"due first within each list. It reads every secret, so it is an operator's tool, not an application's.",
	}
}

func (b *backend) rotationReport(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	kinds, err := b.kindsNamed(d.Get("types").([]string))
	if err != nil {
		return nil, err
	}
	tenant := strings.TrimSpace(d.Get("tenant").(string))
	if tenant != "" {
		if err := validateIdentifier("tenant", tenant); err != nil {
			return nil, err
		}
	}
	cfg, err := b.config(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	now := b.now()
	found := map[string][]interface{}{rotationOverdue: {}, rotationDueSoon: {}}
	checked := 0
	for _, k := range kinds {
		pol := k.policy(cfg)
		err := walkSecrets(ctx, req.Storage, k.Name, tenant, func(e *secretEntry) error {
			checked++
			status := e.rotationStatus(pol, now)
			if _, listed := found[status]; listed {
				found[status] = append(found[status], map[string]interface{}{
					"path":          k.Name + "/" + e.Tenant + "/" + e.Name,
					"last_rotated":  formatTime(e.LastRotated),
					"next_rotation": formatTime(e.nextRotation(pol)),
					"auto_rotate":   e.AutoRotate,
				})
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	for _, list := range found {
		sort.Slice(list, func(i, j int) bool { // RFC 3339 UTC sorts as text
			return list[i].(map[string]interface{})["next_rotation"].(string) < list[j].(map[string]interface{})["next_rotation"].(string)
		})
	}
	return &logical.Response{Data: map[string]interface{}{
		"overdue":        found[rotationOverdue],
		"due_soon":       found[rotationDueSoon],
		"overdue_count":  len(found[rotationOverdue]),
		"due_soon_count": len(found[rotationDueSoon]),
		"checked_count":  checked,
		"as_of":          formatTime(now),
	}}, nil
}
