# Vault Agent on an SSH server: keeps the deploy user's authorized_keys in
# step with penguinmails/ssh/tenant-1/deploy, and leaves a token in
# /run/vault-agent/token for penguinmails-authorized-keys.
#   vault agent -config=/etc/vault-agent/sshd-agent.hcl

vault {
  address = "https://vault.example.com:8200"
}

auto_auth {
  method "approle" {
    mount_path = "auth/approle"
    config = {
      role_id_file_path                   = "/etc/vault-agent/role_id"
      secret_id_file_path                 = "/etc/vault-agent/secret_id"
      remove_secret_id_file_after_reading = false
    }
  }
  sink "file" {
    config = {
      path  = "/run/vault-agent/token"
      mode  = 0640
      group = 997 # gid of penguinmails-keys, the AuthorizedKeysCommandUser
    }
  }
}

template_config {
  # How soon a rotated or revoked key reaches this server (Vault's default
  # is 5m). A revoke should take effect quickly: keep it short.
  static_secret_render_interval = "1m"
}

template {
  source      = "/etc/vault-agent/authorized_keys.ctmpl"
  destination = "/home/deploy/.ssh/authorized_keys"
  perms       = "0644"
}
