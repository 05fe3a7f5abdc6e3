# vault-plugin-penguinmails
#
#   make dev       build the plugin and a real Vault, start Vault on loopback with
#                  the plugin registered (by SHA-256, with VERSION) and mounted
#   make dev-stop  stop what make dev started
#   make dev-policies  install policies/*.hcl and sample users (one per role,
#                  tenant-1 and tenant-2) into the make dev Vault
#   make test      unit tests, then integration tests against a real Vault
#   make bench     in-process engine benchmarks (scheduler tick, index rebuild,
#                  bulk job), the audit log reader (lines/s), then one table of
#                  reads and signs against a real Vault and its own KV v2 and
#                  transit, and the plugin's memory with 100,000 secrets
#                  (BENCH_SKIP_MEMORY=1 leaves that out; BENCH_WRITE=1 also
#                  writes the table to docs/benchmarks.md; BENCH_ONLY=dkim-rsa,...
#                  measures only those rows and their baselines)
#   make fuzz      every Fuzz target of every package, FUZZTIME (60s) each, in turn

VERSION       ?= v0.1.0
VAULT_VERSION ?= 1.21.0
PLUGIN_NAME   := vault-plugin-penguinmails
PLUGIN_BIN    := bin/plugins/$(PLUGIN_NAME)
AUDIT_BIN     := bin/penguinmails-audit
MILTER_BIN    := bin/penguinmails-milter
MIGRATE_BIN   := bin/penguinmails-migrate
FUZZTIME      ?= 60s
LDFLAGS       := -X github.com/penguinmails/vault-plugin-penguinmails.Version=$(VERSION)

export VERSION VAULT_VERSION PLUGIN_NAME PLUGIN_BIN
# Settings of the real-Vault table (integration/bench_table_test.go).
export BENCH_ONLY BENCH_WRITE BENCH_SKIP_MEMORY BENCH_SECONDS BENCH_ROUNDS BENCH_CLIENTS BENCH_SECRETS

.PHONY: build vault dev dev-stop dev-policies test test-unit test-integration bench bench-engine bench-audit fuzz fmt vet clean

build:
	@mkdir -p $(dir $(PLUGIN_BIN))
	go build -trimpath -ldflags "$(LDFLAGS)" -o $(PLUGIN_BIN) ./cmd/$(PLUGIN_NAME)
	go build -trimpath -o $(AUDIT_BIN) ./cmd/penguinmails-audit
	go build -trimpath -o $(MILTER_BIN) ./cmd/penguinmails-milter
	go build -trimpath -o $(MIGRATE_BIN) ./cmd/penguinmails-migrate

# Builds Vault from its Go module once and caches it outside the repository.
vault:
	@scripts/build-vault.sh >/dev/null

dev: build vault
	@scripts/dev.sh start

dev-stop:
	@scripts/dev.sh stop

# Against the Vault of make dev (scripts/dev.sh: loopback, DEV_PORT or 8200,
# root token "root"), with the vault CLI it uses.
dev-policies:
	@VAULT_ADDR=http://127.0.0.1:$${DEV_PORT:-8200} VAULT_TOKEN=root \
	  VAULT="$$(scripts/build-vault.sh)" scripts/policies.sh

test: test-unit test-integration

# Every package but the integration tests (which need a real Vault); this
# also runs the seed corpus of every Fuzz target.
UNIT_PKGS = $$(go list ./... | grep -v /integration$$)

test-unit: vet
	go test -race -count=1 $(UNIT_PKGS)

# go test -fuzz takes one target of one package at a time: list them all and
# run each for FUZZTIME, one after another.
fuzz:
	@set -e; for pkg in $(UNIT_PKGS); do \
	  for target in $$(go test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "fuzz: $$pkg $$target ($(FUZZTIME))"; \
	    go test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
	  done; \
	done

test-integration: build vault
	@scripts/integration.sh test

bench: bench-engine bench-audit build vault
	@scripts/integration.sh bench

# The engine's background work on big mounts, in process. Fixed iteration
# counts: filling a million secrets takes about half a minute, and one bulk
# job over 40,000 a few seconds (about 2 minutes for the whole target).
bench-engine:
	go test -run '^$$' -bench 'InProcess' -benchmem -benchtime 3s .
	go test -run '^$$' -bench 'SchedulerTick' -benchmem -benchtime 100x -timeout 20m .
	go test -run '^$$' -bench 'IndexRebuild|BulkJob' -benchmem -benchtime 2x -timeout 20m .

# penguinmails-audit's reader on a generated 32 MB log of realistic Vault
# audit lines: reports lines/s and MB/s.
bench-audit:
	go test -run '^$$' -bench 'AuditLines' -benchmem -benchtime 5x ./internal/auditlog/

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin .dev
