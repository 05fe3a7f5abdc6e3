#!/usr/bin/env bash
# Builds a real Vault server from its Go module and caches the binary.
#
# No Vault binary can be downloaded on these machines, but the Go module proxy
# serves github.com/hashicorp/vault itself. `go install` refuses it (its go.mod
# has replace directives), so we build it as a dependency of a throw-away main
# module that lives in the cache folder, never in the plugin's own go.mod.
#
# Prints the path of the binary on stdout; progress goes to stderr.
# Environment: VAULT_VERSION (default 1.21.0), VAULT_CACHE_DIR.
set -euo pipefail

version="${VAULT_VERSION:-1.21.0}"
cache="${VAULT_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vault-plugin-penguinmails}"
bin="$cache/vault-v$version/vault"

log() { printf 'build-vault: %s\n' "$*" >&2; }

# True when the cached binary exists and is the wanted version. (No pipe into
# grep -q: with pipefail, its early exit can fail the check at random.)
cached() { [ -x "$bin" ] && [[ "$("$bin" version 2>/dev/null)" == *"Vault v$version"* ]]; }

if cached; then
  echo "$bin"
  exit 0
fi

# A lock so that two callers (make dev and make test in parallel) build once.
mkdir -p "$cache"
exec 9>"$cache/.build.lock"
flock 9
if cached; then
  echo "$bin"
  exit 0
fi

log "building Vault v$version from its Go module (once; about 20 minutes on 2 cores when the Go module cache is cold)"
work="$cache/build-v$version"
rm -rf "$work"
mkdir -p "$work"
cd "$work"

# Locate Vault's own go.mod and go.sum in the module cache.
info=$(go mod download -json "github.com/hashicorp/vault@v$version")
moddir=$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
gomod=$(printf '%s' "$info" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')
[ -f "$gomod" ] && [ -f "$moddir/go.sum" ] || { log "could not find Vault's go.mod/go.sum (got '$gomod', '$moddir')"; exit 1; }

# Keep every require/replace line of Vault's go.mod except the module, go and
# toolchain lines and the replaces that point into Vault's own source tree.
{
  echo "module vaultserverbuild"
  echo
  echo "go $(go env GOVERSION | sed 's/^go//; s/\.[0-9]*$//')"
  echo
  echo "require github.com/hashicorp/vault v$version"
  echo
  grep -v -E '^(module|go|toolchain)[[:space:]]' "$gomod" | grep -v -E '=>[[:space:]]*\.\.?/'
} > go.mod
cp "$moddir/go.sum" go.sum
chmod u+w go.sum

cat > main.go <<'GO'
package main

import (
	"os"

	"github.com/hashicorp/vault/command"
)

func main() { os.Exit(command.Run(os.Args[1:])) }
GO

mkdir -p "$(dirname "$bin")"
go build -mod=mod -trimpath -ldflags "-s -w" -o "$bin.tmp" .
mv "$bin.tmp" "$bin"
"$bin" version >&2
cd "$cache" && rm -rf "$work"
echo "$bin"
