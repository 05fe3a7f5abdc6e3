package penguinmails

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/penguinmails/vault-plugin-penguinmails/internal/provider"
)

// providersStoragePrefix holds the mount's own provider credentials: the
// keys that manage other keys (a SendGrid key with the api_keys scope, a
// Mailgun admin key, an IAM user's access key, a Mailu API token). It lies
// under "config", which is seal-wrapped; the credentials are never returned.
const providersStoragePrefix = "config/providers/"

// providerCredential is one stored management credential.
type providerCredential struct {
	Provider string `json:"provider"`
	// ID is what the provider knows the credential by, when it is not
	// secret (an IAM access key id).
	ID     string `json:"id,omitempty"`
	Secret string `json:"secret"`
	// BaseURL is the only API root this credential is ever sent to: a
	// secret that names the credential cannot point it elsewhere.
	BaseURL     string    `json:"base_url,omitempty"`
	CreatedTime time.Time `json:"created_time"`
	UpdatedTime time.Time `json:"updated_time"`
}

// Providers whose management credential the mount can hold, and the field
// that carries the secret for each.
var providerSecretField = map[string]string{
	"sendgrid": "api_key",
	"mailgun":  "api_key",
	"ses":      "secret_access_key",
	"mailu":    "api_token",
}

func providerNames() []string { return []string{"mailgun", "mailu", "sendgrid", "ses"} }

func pathProviders(b *backend) []*framework.Path {
	fields := map[string]*framework.FieldSchema{
		"name": {Type: framework.TypeString, Required: true,
			Description: "Name of the credential, referenced by a secret's account field. It " + identifierRule + "."},
		"provider": {Type: framework.TypeString,
			Description: "Provider: " + strings.Join(providerNames(), ", ") + ". Required on create; cannot change."},
		"api_key": {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
			Description: "SendGrid: a key with the api_keys scopes. Mailgun: an admin key (Keys API)."},
		"access_key_id": {Type: framework.TypeString,
			Description: "SES: the IAM access key id of a user allowed iam:CreateAccessKey and iam:DeleteAccessKey on the keys' users."},
		"secret_access_key": {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
			Description: "SES: that access key's secret."},
		"api_token": {Type: framework.TypeString, DisplayAttrs: &framework.DisplayAttributes{Sensitive: true},
			Description: "Mailu: an API token of the admin API (API_TOKEN in mailu.env)."},
		"base_url": {Type: framework.TypeString,
			Description: "The only API root the credential is sent to (https, or http to a loopback address). Mailu: required, " +
				"e.g. https://mail.example.com/api. Others: default the provider's public API for the secret's region."},
	}
	return []*framework.Path{
		{
			Pattern:      "config/providers/?$",
			DisplayAttrs: &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "provider_credentials"},
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.ListOperation: b.listFolder("List the mount's provider credentials.",
					func(*framework.FieldData) (string, error) { return providersStoragePrefix, nil }),
			},
			HelpSynopsis: "List the mount's provider credentials.",
		},
		{
			Pattern:        "config/providers/" + framework.GenericNameRegex("name"),
			DisplayAttrs:   &framework.DisplayAttributes{OperationPrefix: operationPrefix, OperationSuffix: "provider_credential"},
			Fields:         fields,
			ExistenceCheck: b.providerExists,
			Operations: map[logical.Operation]framework.OperationHandler{
				logical.CreateOperation: &framework.PathOperation{Callback: b.handle(b.writeProvider), Summary: "Store a provider credential.",
					ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
				logical.UpdateOperation: &framework.PathOperation{Callback: b.handle(b.writeProvider), Summary: "Replace a provider credential's secret.",
					ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
				logical.ReadOperation: &framework.PathOperation{Callback: b.handle(b.readProvider),
					Summary: "Read a provider credential's provider and times; the secret is never returned."},
				logical.DeleteOperation: &framework.PathOperation{Callback: b.handle(b.deleteProvider), Summary: "Delete a provider credential.",
					ForwardPerformanceStandby: true, ForwardPerformanceSecondary: true},
			},
			HelpSynopsis:    "The mount's own credentials for managing keys at a provider.",
			HelpDescription: strings.TrimSpace(providersHelp),
		},
	}
}

func (b *backend) providerExists(ctx context.Context, req *logical.Request, d *framework.FieldData) (bool, error) {
	c, err := loadProviderCredential(ctx, req.Storage, d.Get("name").(string))
	return c != nil, err
}

func loadProviderCredential(ctx context.Context, s logical.Storage, name string) (*providerCredential, error) {
	raw, err := s.Get(ctx, providersStoragePrefix+name)
	if err != nil || raw == nil {
		return nil, err
	}
	var c providerCredential
	if err := raw.DecodeJSON(&c); err != nil {
		return nil, fmt.Errorf("decoding provider credential %q: %w", name, err)
	}
	return &c, nil
}

func (b *backend) writeProvider(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	name := d.Get("name").(string)
	if err := validateIdentifier("name", name); err != nil {
		return nil, err
	}
	c, err := loadProviderCredential(ctx, req.Storage, name)
	if err != nil {
		return nil, err
	}
	now := b.now()
	if c == nil {
		c = &providerCredential{CreatedTime: now}
	}
	p := strings.TrimSpace(d.Get("provider").(string))
	switch {
	case p == "" && c.Provider == "":
		return nil, badInput("provider is required: one of %s", strings.Join(providerNames(), ", "))
	case p != "" && c.Provider != "" && p != c.Provider:
		return nil, badInput("provider of config/providers/%s is %s and cannot change; delete it and write it anew", name, c.Provider)
	case p != "":
		if err := validateOneOf("provider", p, providerNames()); err != nil {
			return nil, err
		}
		c.Provider = p
	}
	secretField := providerSecretField[c.Provider]
	for f := range providerSecretField {
		if _, given := d.GetOk(providerSecretField[f]); given && providerSecretField[f] != secretField {
			return nil, badInput("%s does not apply to a %s credential; it takes %s", providerSecretField[f], c.Provider, secretField)
		}
	}
	if v, ok := d.GetOk(secretField); ok {
		c.Secret = strings.TrimSpace(v.(string))
	}
	if c.Secret == "" || len(c.Secret) > maxPasswordLen {
		return nil, badInput("%s is required: 1 to %d characters", secretField, maxPasswordLen)
	}
	if v, ok := d.GetOk("access_key_id"); ok {
		if c.Provider != "ses" {
			return nil, badInput("access_key_id applies to ses credentials only")
		}
		c.ID = strings.TrimSpace(v.(string))
	}
	if c.Provider == "ses" {
		if err := checkAccessKeyID("access_key_id", c.ID); err != nil {
			return nil, err
		}
	}
	if v, ok := d.GetOk("base_url"); ok {
		c.BaseURL = strings.TrimSpace(v.(string))
	}
	if c.BaseURL != "" || c.Provider == "mailu" {
		if _, err := provider.CheckBaseURL(c.BaseURL); err != nil {
			return nil, badInput("invalid base_url %s: %v", quoteShort(c.BaseURL), err)
		}
	}
	c.UpdatedTime = now
	entry, err := logical.StorageEntryJSON(providersStoragePrefix+name, c)
	if err != nil {
		return nil, err
	}
	return nil, req.Storage.Put(ctx, entry)
}

func (b *backend) readProvider(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	c, err := loadProviderCredential(ctx, req.Storage, d.Get("name").(string))
	if err != nil || c == nil {
		return nil, err
	}
	data := map[string]interface{}{
		"provider": c.Provider, "created_time": formatTime(c.CreatedTime), "updated_time": formatTime(c.UpdatedTime),
	}
	if c.ID != "" {
		data["access_key_id"] = c.ID
	}
	if c.BaseURL != "" {
		data["base_url"] = c.BaseURL
	}
	return &logical.Response{Data: data}, nil
}

func (b *backend) deleteProvider(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	return nil, req.Storage.Delete(ctx, providersStoragePrefix+d.Get("name").(string))
}

const providersHelp = `
The mount's own credentials for managing keys at a provider, kept in
seal-wrapped storage and never returned by a read.

  vault write penguinmails/config/providers/sendgrid-main provider=sendgrid api_key=SG.xxx
  vault write penguinmails/config/providers/aws-iam provider=ses \
      access_key_id=AKIA... secret_access_key=...
  vault write penguinmails/config/providers/mailu-1 provider=mailu api_token=... \
      base_url=https://mail.example.com/api

A credential is sent only to its own base_url: a secret that names it
cannot point it elsewhere (its base_url or api_url must be empty or the
same).

An API key secret names one in its account field; its rotations then create
and delete keys with it. Without an account a secret's own current key
authenticates its rotation (a SendGrid key with the api_keys scopes, an IAM
user allowed to manage its own access keys). SMTP secrets with driver=mailu
name a mailu credential.
`
