# tenant: one customer's application or portal. Every path carries
# {{identity.entity.metadata.tenant_id}}, so a token sees its own tenant
# and no other: a token whose entity has no tenant_id gets none of these
# paths. What spans tenants (lists of tenants, rotation/status without a
# tenant, bulk and tenant jobs, job records, config, dkim-domains) is not
# granted; rotation/status/{tenant} is the tenant-scoped status form.
#
# Its own SMTP credentials, provider API keys and OAuth tokens: create, read,
# update, rotate and read the history. Deletion, which drops the history, is
# left to admins. account names a platform account of config/providers (a
# Mailgun admin key, an AWS IAM key, a Mailu API token): a tenant that could
# name one would have the platform's account mint keys into its own secret,
# so it may not set it; its secrets rotate with their own key.

path "penguinmails/smtp/{{identity.entity.metadata.tenant_id}}/" {
  capabilities = ["list"]
}

path "penguinmails/smtp/{{identity.entity.metadata.tenant_id}}/+" {
  capabilities = ["create", "read", "update", "patch"]
  # "data" too: Vault checks parameters at the top level only, so the KV v2
  # shape ({"data": {"account": ...}}) would carry account past this rule.
  denied_parameters = {
    "account" = []
    "data"    = []
  }
}

path "penguinmails/smtp/{{identity.entity.metadata.tenant_id}}/+/rotate" {
  capabilities = ["update"]
}

path "penguinmails/smtp/{{identity.entity.metadata.tenant_id}}/+/history" {
  capabilities = ["read"]
}

path "penguinmails/api-keys/{{identity.entity.metadata.tenant_id}}/" {
  capabilities = ["list"]
}

path "penguinmails/api-keys/{{identity.entity.metadata.tenant_id}}/+" {
  capabilities = ["create", "read", "update", "patch"]
  # "data" too: Vault checks parameters at the top level only, so the KV v2
  # shape ({"data": {"account": ...}}) would carry account past this rule.
  denied_parameters = {
    "account" = []
    "data"    = []
  }
}

path "penguinmails/api-keys/{{identity.entity.metadata.tenant_id}}/+/rotate" {
  capabilities = ["update"]
}

path "penguinmails/api-keys/{{identity.entity.metadata.tenant_id}}/+/history" {
  capabilities = ["read"]
}

path "penguinmails/oauth/{{identity.entity.metadata.tenant_id}}/" {
  capabilities = ["list"]
}

path "penguinmails/oauth/{{identity.entity.metadata.tenant_id}}/+" {
  capabilities = ["create", "read", "update", "patch"]
}

path "penguinmails/oauth/{{identity.entity.metadata.tenant_id}}/+/rotate" {
  capabilities = ["update"]
}

path "penguinmails/oauth/{{identity.entity.metadata.tenant_id}}/+/history" {
  capabilities = ["read"]
}

# OAuth consent for its own mailboxes.
path "penguinmails/oauth/{{identity.entity.metadata.tenant_id}}/+/auth_url" {
  capabilities = ["update"]
}

path "penguinmails/oauth/{{identity.entity.metadata.tenant_id}}/+/exchange" {
  capabilities = ["update"]
}

# DKIM: sign with its own keys and read their public parts and DNS records;
# creating, rotating and exporting keys stay with the platform.
path "penguinmails/dkim/{{identity.entity.metadata.tenant_id}}/" {
  capabilities = ["list"]
}

path "penguinmails/dkim/{{identity.entity.metadata.tenant_id}}/+" {
  capabilities = ["read"]
}

path "penguinmails/dkim/{{identity.entity.metadata.tenant_id}}/+/dns" {
  capabilities = ["read"]
}

path "penguinmails/dkim/{{identity.entity.metadata.tenant_id}}/+/sign" {
  capabilities = ["update"]
}

# SSH: its own public keys (a read never returns the private key) and the
# authorized_keys text its servers poll.
path "penguinmails/ssh/{{identity.entity.metadata.tenant_id}}/" {
  capabilities = ["list"]
}

path "penguinmails/ssh/{{identity.entity.metadata.tenant_id}}/+" {
  capabilities = ["read"]
}

path "penguinmails/ssh/{{identity.entity.metadata.tenant_id}}/+/authorized_keys" {
  capabilities = ["read"]
}

# Its own rows of rotation/status.
path "penguinmails/rotation/status/{{identity.entity.metadata.tenant_id}}" {
  capabilities = ["read"]
}

# Private keys never go to a tenant token, whatever else it is given.
path "penguinmails/+/+/+/private" {
  capabilities = ["deny"]
}
