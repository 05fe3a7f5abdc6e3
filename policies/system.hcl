# system: the platform's own automation and break-glass operators. Every path
# of the penguinmails/ mount, and the mount's own lifecycle: tuning it (audit
# keys, plugin version) and reloading the plugin after an upgrade.
path "penguinmails/*" {
  capabilities = ["create", "read", "update", "patch", "delete", "list", "sudo"]
}

path "sys/mounts/penguinmails" {
  capabilities = ["create", "read", "update", "delete", "sudo"]
}

path "sys/mounts/penguinmails/tune" {
  capabilities = ["read", "update"]
}

path "sys/plugins/reload/backend" {
  capabilities = ["update", "sudo"]
}
