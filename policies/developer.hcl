# developer: reads provider API keys (and lists them) of every tenant;
# nothing else on the mount: no SMTP, OAuth, DKIM or SSH, no writes, no
# rotation, no status, no config.
path "penguinmails/api-keys/" {
  capabilities = ["list"]
}

path "penguinmails/api-keys/+/" {
  capabilities = ["list"]
}

path "penguinmails/api-keys/+/+" {
  capabilities = ["read"]
}
