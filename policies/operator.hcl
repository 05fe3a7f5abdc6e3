# operator: support and on-call staff. Reads every tenant's credentials (an
# SMTP password, an API key, an OAuth access token: what they need to
# diagnose delivery) with their history, SSH authorized_keys, DKIM DNS
# records and rotation status and jobs. No writes, no rotation, no delete,
# no config, and no private key export: the denies below win over anything
# another policy on the same token grants.

path "penguinmails/smtp/" {
  capabilities = ["list"]
}

path "penguinmails/smtp/+/" {
  capabilities = ["list"]
}

path "penguinmails/smtp/+/+" {
  capabilities = ["read"]
}

path "penguinmails/smtp/+/+/history" {
  capabilities = ["read"]
}

path "penguinmails/api-keys/" {
  capabilities = ["list"]
}

path "penguinmails/api-keys/+/" {
  capabilities = ["list"]
}

path "penguinmails/api-keys/+/+" {
  capabilities = ["read"]
}

path "penguinmails/api-keys/+/+/history" {
  capabilities = ["read"]
}

path "penguinmails/oauth/" {
  capabilities = ["list"]
}

path "penguinmails/oauth/+/" {
  capabilities = ["list"]
}

path "penguinmails/oauth/+/+" {
  capabilities = ["read"]
}

path "penguinmails/oauth/+/+/history" {
  capabilities = ["read"]
}

path "penguinmails/dkim/" {
  capabilities = ["list"]
}

path "penguinmails/dkim/+/" {
  capabilities = ["list"]
}

path "penguinmails/dkim/+/+" {
  capabilities = ["read"]
}

path "penguinmails/dkim/+/+/history" {
  capabilities = ["read"]
}

path "penguinmails/ssh/" {
  capabilities = ["list"]
}

path "penguinmails/ssh/+/" {
  capabilities = ["list"]
}

path "penguinmails/ssh/+/+" {
  capabilities = ["read"]
}

path "penguinmails/ssh/+/+/history" {
  capabilities = ["read"]
}

path "penguinmails/ssh/+/+/authorized_keys" {
  capabilities = ["read"]
}

path "penguinmails/dkim/+/+/dns" {
  capabilities = ["read"]
}

path "penguinmails/dkim-domains/" {
  capabilities = ["list"]
}

path "penguinmails/dkim-domains/+" {
  capabilities = ["read"]
}

path "penguinmails/rotation/status" {
  capabilities = ["read"]
}

path "penguinmails/rotation/status/+" {
  capabilities = ["read"]
}

path "penguinmails/rotate/jobs/" {
  capabilities = ["list"]
}

path "penguinmails/rotate/jobs/+" {
  capabilities = ["read"]
}

path "penguinmails/config" {
  capabilities = ["deny"]
}

path "penguinmails/config/*" {
  capabilities = ["deny"]
}

path "penguinmails/+/+/+/private" {
  capabilities = ["deny"]
}
