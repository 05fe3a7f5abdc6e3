# admin: every tenant's secrets on the penguinmails/ mount: create, read,
# update, delete, list, rotate, revoke, private key export, bulk and tenant
# rotation jobs, rotation status and config (including provider accounts).
# Unlike system, nothing of the mount itself (sys/mounts, plugin reload).
path "penguinmails/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list"]
}
