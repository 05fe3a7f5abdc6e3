# dkim-signer: the MTA or sending service that asks Vault to sign mail with
# the tenants' DKIM keys. Signing is an update of dkim/{tenant}/{domain}/sign;
# the key never leaves Vault: export (an update of .../private) is denied
# outright, so no other policy attached to the same token can grant it.
path "penguinmails/dkim/+/+/sign" {
  capabilities = ["update"]
}

path "penguinmails/dkim/+/+/private" {
  capabilities = ["deny"]
}
