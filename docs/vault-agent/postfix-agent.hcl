# Vault Agent on a Postfix relay host: keeps /etc/postfix/sasl_passwd (and its
# lookup table) in step with penguinmails/smtp/tenant-1/relay.
#   vault agent -config=/etc/vault-agent/postfix-agent.hcl

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
}

template_config {
  # The engine's secrets carry no lease, so the agent reads them again on
  # this interval (Vault's default is 5m). It bounds how long Postfix keeps
  # sending a password that a rotation replaced.
  static_secret_render_interval = "1m"
}

template {
  source      = "/etc/vault-agent/sasl_passwd.ctmpl"
  destination = "/etc/postfix/sasl_passwd"
  perms       = "0600"
  # Runs only when the rendered text changed: Postfix reads the .db table,
  # not the text file, and notices a new table by itself.
  exec {
    command = ["postmap", "hash:/etc/postfix/sasl_passwd"]
    timeout = "30s"
  }
}
