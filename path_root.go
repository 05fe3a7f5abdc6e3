package penguinmails

import (
	"context"
	"strings"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// pathRoot answers `vault list penguinmails/`: the secret types, each a
// folder to list further ({type}/ lists tenants, {type}/{tenant}/ names).
// The list comes from the kinds the backend serves, so a new type shows up
// here without an edit.
func pathRoot(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      "/?$",
		DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationVerb: "list", OperationSuffix: "secret-types"},
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ListOperation: &framework.PathOperation{
				Callback: b.handle(b.listSecretTypes),
				Summary:  "List the secret types of the mount.",
			},
		},
		HelpSynopsis:    "The secret types this mount keeps.",
		HelpDescription: strings.TrimSpace(rootHelp),
	}
}

func (b *backend) listSecretTypes(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
	kinds := b.sortedKinds()
	keys := make([]string, 0, len(kinds))
	info := make(map[string]interface{}, len(kinds))
	for _, k := range kinds {
		keys = append(keys, k.Name+"/")
		info[k.Name+"/"] = map[string]interface{}{"title": k.Title}
	}
	return logical.ListResponseWithInfo(keys, info), nil
}

const rootHelp = `
Lists the secret types (smtp/, api-keys/, dkim/, ...). Each is a folder:
list {type}/ for its tenants and {type}/{tenant}/ for the names of that
tenant's secrets. Settings live at config, rotation state at rotation/status.
`
