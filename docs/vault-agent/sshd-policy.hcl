# The SSH server's agent, and penguinmails-authorized-keys with the agent's
# token, read the keys valid now of tenant-1's users; never a private key.
path "penguinmails/ssh/tenant-1/+/authorized_keys" {
  capabilities = ["read"]
}
