# What the platform's services need for this client, and no more: store and
# read SMTP credentials and API keys, rotate them, sign with DKIM keys and read
# their DNS records (never export a private key), and read rotation status.
# Scope it to one tenant with identity templating, e.g.
# "penguinmails/smtp/{{identity.entity.metadata.tenant_id}}/*".
path "penguinmails/smtp/*" {
  capabilities = ["create", "update", "read"]
}
path "penguinmails/api-keys/*" {
  capabilities = ["create", "update", "read"]
}
path "penguinmails/dkim/+/+/sign" {
  capabilities = ["update"]
}
path "penguinmails/dkim/+/+/dns" {
  capabilities = ["read"]
}
path "penguinmails/dkim/+/+/rotate" {
  capabilities = ["update"]
}
path "penguinmails/rotation/status" {
  capabilities = ["read"]
}
