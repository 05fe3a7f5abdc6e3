# rotation-service: an external scheduler or incident tool. It rotates (one
# secret, a tenant, a bulk job), follows its jobs and reads rotation status;
# it reads no secret, changes no setting and exports no key.
path "penguinmails/+/+/+/rotate" {
  capabilities = ["update"]
}

# A DKIM rotation ends when its pending key is activated (staged activation).
path "penguinmails/dkim/+/+/activate" {
  capabilities = ["update"]
}

path "penguinmails/rotate/bulk" {
  capabilities = ["update"]
}

path "penguinmails/rotate-tenant/+" {
  capabilities = ["update"]
}

path "penguinmails/rotate/jobs/" {
  capabilities = ["list"]
}

path "penguinmails/rotate/jobs/+" {
  capabilities = ["read"]
}

path "penguinmails/rotation/status" {
  capabilities = ["read"]
}

path "penguinmails/rotation/status/+" {
  capabilities = ["read"]
}

path "penguinmails/+/+/+/private" {
  capabilities = ["deny"]
}
