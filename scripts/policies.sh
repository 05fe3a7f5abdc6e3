#!/usr/bin/env bash
# Installs policies/*.hcl into a running Vault, with a sample identity set-up:
# userpass enabled; one user per role (system, admin, operator, developer,
# rotation-service, dkim-signer) and one per tenant (tenant-1, tenant-2), each
# bound by an entity alias to an entity of the same name that carries the
# role's policy; a tenant's entity has the metadata tenant_id, which
# policies/tenant.hcl templates into its paths. Safe to run again: policies
# and entities are overwritten, existing aliases kept.
#   scripts/policies.sh
# Environment:
#   VAULT_ADDR, VAULT_TOKEN  the Vault and a token that may write sys/policy,
#                            sys/auth, identity/ and auth/userpass/ (root in dev)
#   VAULT                    the vault CLI (default: vault on PATH)
#   PM_USER_PASSWORD         password of every sample user (default:
#                            penguinmails-dev; a sample for a dev Vault only)
#   PM_TENANTS               the tenant users (default "tenant-1 tenant-2")
#   PM_USERPASS_PATH         where userpass is mounted (default userpass)
set -euo pipefail
cd "$(dirname "$0")/.."

: "${VAULT_ADDR:?set VAULT_ADDR to the Vault to configure}"
: "${VAULT_TOKEN:?set VAULT_TOKEN to a token that may write policies and identities}"
vault="${VAULT:-vault}"
password="${PM_USER_PASSWORD:-penguinmails-dev}"
tenants="${PM_TENANTS:-tenant-1 tenant-2}"
auth_path="${PM_USERPASS_PATH:-userpass}"
roles="system admin operator developer rotation-service dkim-signer"

install_policies() {
  local f
  for f in policies/*.hcl; do
    "$vault" policy write "$(basename "$f" .hcl)" "$f" >/dev/null
  done
}

enable_userpass() {
  if ! "$vault" auth list -format=json | grep -q "\"$auth_path/\""; then
    "$vault" auth enable -path="$auth_path" userpass >/dev/null
  fi
  "$vault" read -field=accessor "sys/auth/$auth_path"
}

# add_user NAME POLICY ACCESSOR [METADATA...]: the entity NAME with POLICY and
# METADATA (k=v), the userpass user NAME, and the alias binding them.
add_user() {
  local name=$1 policy=$2 accessor=$3; shift 3
  local meta=(role="$policy") kv
  for kv in "$@"; do meta+=("$kv"); done
  # identity/entity/name/NAME creates the entity or updates it in place. (On
  # an update Vault 1.21 logs a "duplicate identity name" warning that names
  # the entity's own alias twice, the same canonical id: nothing to merge.)
  "$vault" write "identity/entity/name/$name" policies="$policy" "${meta[@]/#/metadata=}" >/dev/null
  local id bound
  id=$("$vault" read -field=id "identity/entity/name/$name")
  # The password goes through stdin, never the command line (ps would show it).
  printf '%s' "$password" | "$vault" write "auth/$auth_path/users/$name" password=- token_ttl=1h >/dev/null
  bound=$("$vault" write -field=id identity/lookup/entity alias_name="$name" alias_mount_accessor="$accessor" 2>/dev/null || true)
  if [ -z "$bound" ]; then
    "$vault" write identity/entity-alias name="$name" canonical_id="$id" mount_accessor="$accessor" >/dev/null
  elif [ "$bound" != "$id" ]; then
    echo "policies.sh: the $auth_path user $name is bound to entity $bound, not to the entity $name ($id); delete that alias first" >&2
    exit 1
  fi
  echo "  $name: policy $policy${*:+, $*}"
}

install_policies
accessor=$(enable_userpass)
echo "Policies $(cd policies && ls *.hcl | sed 's/\.hcl$//' | tr '\n' ' ')installed; users on auth/$auth_path:"
for role in $roles; do
  add_user "$role" "$role" "$accessor"
done
for tenant in $tenants; do
  add_user "$tenant" tenant "$accessor" "tenant_id=$tenant"
done
echo "Log in with: vault login -method=userpass -path=$auth_path username=tenant-1"
