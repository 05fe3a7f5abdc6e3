#!/usr/bin/env bash
# Runs the integration tests (or benchmarks) against a real Vault. The Go test
# harness starts and stops Vault itself; this wrapper only makes sure that no
# Vault outlives the run, even if the test binary is killed.
#   scripts/integration.sh test|bench|bench-go
# bench prints issue #11's table (TestBenchTable; its settings, BENCH_*, are
# described there; BENCH_WRITE=1 writes docs/benchmarks.md); bench-go runs
# the Go Benchmark* functions of integration/ instead.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="${1:-test}"
vault_bin=$(scripts/build-vault.sh)
pidfile=$(mktemp)

# The test harness appends the pid of every Vault it starts, one a line; each
# leads its own process group (with its plugins). A pid is only signalled
# while it still runs `vault server`, so a recycled pid is left alone.
stop_group() {
  local pid=$1
  case "$(ps -p "$pid" -o args= 2>/dev/null)" in
    *vault*server*) ;;
    *) return 0 ;;
  esac
  echo "integration: Vault (pid $pid) outlived the tests; stopping it" >&2
  kill -TERM -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  kill -KILL -- "-$pid" 2>/dev/null || true
}

cleanup() {
  local pid
  if [ -f "$pidfile" ]; then
    while read -r pid; do
      if [ -n "$pid" ]; then stop_group "$pid"; fi
    done < "$pidfile"
  fi
  rm -f "$pidfile"
}
trap cleanup EXIT

export VAULT_BINARY="$vault_bin" PLUGIN_BINARY="$PWD/${PLUGIN_BIN:-bin/plugins/vault-plugin-penguinmails}"
export PLUGIN_VERSION="${VERSION:-v0.1.0}" PENGUINMAILS_PIDFILE="$pidfile"
export MILTER_BINARY="$PWD/bin/penguinmails-milter"

case "$mode" in
  test)  go test -count=1 -timeout 20m ./integration/ ;;
  bench) VAULT_LOG_LEVEL=info PENGUINMAILS_BENCH_TABLE=1 go test -count=1 -timeout 30m -v -run '^TestBenchTable$' ./integration/ ;;
  bench-go) VAULT_LOG_LEVEL=info go test -count=1 -timeout 30m -run '^$' -bench . -benchmem -benchtime "${BENCHTIME:-3s}" ./integration/ ;;
  *) echo "usage: $0 test|bench|bench-go" >&2; exit 2 ;;
esac
