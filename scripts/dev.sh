#!/usr/bin/env bash
# Starts (or refreshes) a real Vault dev server on loopback with the plugin
# registered by SHA-256 and mounted at penguinmails/, or stops it.
#   scripts/dev.sh start|stop
# Environment: DEV_PORT (default 8200), VERSION (plugin version, v0.1.0),
# PLUGIN_BIN (built plugin, bin/plugins/vault-plugin-penguinmails).
set -euo pipefail
cd "$(dirname "$0")/.."

port="${DEV_PORT:-8200}"
version="${VERSION:-v0.1.0}"
name="${PLUGIN_NAME:-vault-plugin-penguinmails}"
plugin_bin="${PLUGIN_BIN:-bin/plugins/$name}"
dev="$PWD/.dev"
pidfile="$dev/vault.pid"
log="$dev/vault.log"

export VAULT_ADDR="http://127.0.0.1:$port" VAULT_TOKEN=root
# The dev server and CLI keep their token file here, not in the user's HOME.
export HOME="$dev/home"

running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

stop() {
  if running; then
    local pid; pid=$(cat "$pidfile")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 1 75); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    echo "Stopped Vault (pid $pid)."
  else
    echo "No dev Vault is running."
  fi
  rm -f "$pidfile"
}

wait_healthy() {
  for _ in $(seq 1 150); do
    "$vault" status >/dev/null 2>&1 && return 0
    running || { echo "Vault exited; see $log" >&2; tail -20 "$log" >&2; exit 1; }
    sleep 0.2
  done
  echo "Vault did not become healthy in 30 s; see $log" >&2
  exit 1
}

start() {
  vault=$(scripts/build-vault.sh)
  mkdir -p "$dev/plugins" "$HOME" bin
  ln -sf "$vault" bin/vault
  cp "$plugin_bin" "$dev/plugins/$name.new" && mv "$dev/plugins/$name.new" "$dev/plugins/$name"

  if running; then
    echo "Vault is already running (pid $(cat "$pidfile")); refreshing the plugin."
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "Port $port is taken by another program; set DEV_PORT to use another." >&2
      exit 1
    fi
    setsid "$vault" server -dev -dev-root-token-id=root \
      -dev-listen-address="127.0.0.1:$port" -dev-plugin-dir="$dev/plugins" \
      >"$log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
  fi
  wait_healthy

  sum=$(sha256sum "$dev/plugins/$name" | cut -d' ' -f1)
  "$vault" plugin register -sha256="$sum" -version="$version" secret "$name" >/dev/null
  if "$vault" secrets list -format=json | grep -q '"penguinmails/"'; then
    "$vault" secrets tune -plugin-version="$version" penguinmails/ >/dev/null
    "$vault" plugin reload -mounts=penguinmails/ >/dev/null
  else
    "$vault" secrets enable -path=penguinmails -plugin-version="$version" "$name" >/dev/null
  fi

  cat <<MSG

Vault $("$vault" version | cut -d' ' -f2) is running at $VAULT_ADDR (log: .dev/vault.log)
with $name $version (sha256 ${sum:0:12}...) mounted at penguinmails/.

In another shell:

  export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=root
  export PATH="$PWD/bin:\$PATH"    # the vault CLI that make dev built

  vault write penguinmails/smtp/tenant-1/mail-1 username=admin@example.com password=s3cret host=smtp.example.com port=587 encryption=starttls
  vault read penguinmails/smtp/tenant-1/mail-1
  vault write -f penguinmails/smtp/tenant-1/mail-1/rotate reason="quarterly review"

Stop it with: make dev-stop
MSG
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
