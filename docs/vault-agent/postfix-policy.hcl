# The Postfix host's agent reads its one relay credential and nothing else.
path "penguinmails/smtp/tenant-1/relay" {
  capabilities = ["read"]
}
