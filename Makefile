# tasker-go developer commands. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := bin
PG_IMAGE ?= tasker-go/postgres:15
export TESTCONTAINERS_RYUK_DISABLED ?= true
export TESTCONTAINERS_HOST_OVERRIDE ?= 127.0.0.1
# Tests use the locally built image unless the caller chose another (or a database URL).
export TASKER_TEST_PG_IMAGE ?= $(PG_IMAGE)

.PHONY: help build test test-unit test-integration lint pg-image cross run bench test-chaos fuzz clean

help: ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

build: ## build all binaries into bin/ (static CGO_ENABLED=0, stripped, -trimpath: the same as `make cross`)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/ ./cmd/...

test: pg-image ## run every test, integration included (Postgres via testcontainers or TASKER_TEST_DATABASE_URL; reduced chaos suite when Docker is present)
	$(GO) test -count=1 -p 1 -timeout 30m ./...

test-unit: ## run the tests that need no database
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /integration)

lint: ## go vet + gofmt must be clean
	$(GO) vet ./...
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

pg-image: ## build the local PostgreSQL 15 image from Debian packages (reused when present)
	@if [ -n "$$TASKER_TEST_DATABASE_URL" ]; then echo "pg-image: skipped (TASKER_TEST_DATABASE_URL set)"; \
	elif ! docker info >/dev/null 2>&1; then echo "pg-image: skipped (no Docker engine)"; \
	else TASKER_TEST_PG_IMAGE=$(PG_IMAGE) ./scripts/build-pg-image.sh; fi

run: ## run example workflows end to end (Postgres in Docker unless DATABASE_URL is set)
	@if [ -z "$$DATABASE_URL" ]; then $(MAKE) --no-print-directory pg-image; fi
	$(GO) run ./cmd/tasker demo

bench: ## tasker-bench, median of 3 runs: PGMQ floors, worker-only, River peer, end to end (durable Postgres in Docker unless DATABASE_URL is set; BENCH_FLAGS adds flags)
	@if [ -z "$$DATABASE_URL" ]; then $(MAKE) --no-print-directory pg-image; fi
	$(GO) run ./cmd/tasker-bench $(BENCH_FLAGS)

.PHONY: bench-quick
bench-quick: ## reduced tasker-bench run for CI (one run, small sizes, under 2 minutes)
	@if [ -z "$$DATABASE_URL" ]; then $(MAKE) --no-print-directory pg-image; fi
	$(GO) run ./cmd/tasker-bench --quick $(BENCH_FLAGS)

cross: ## static CGO_ENABLED=0 binaries for linux/amd64, linux/arm64, darwin/arm64 in dist/
	@for p in linux/amd64 linux/arm64 darwin/arm64; do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  echo "cross: $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags='-s -w' -o dist/$$os-$$arch/ ./cmd/... || exit 1; \
	done

.PHONY: app-image
app-image: ## container image of the worker and orchestrator: static CGO_ENABLED=0 binaries FROM scratch, no registry (TASKER_APP_IMAGE, default tasker-go/app:dev)
	./scripts/build-app-image.sh

test-chaos: pg-image ## full chaos test (2000 tasks; SIGKILLed workers, PostgreSQL crash-restart, partition, freeze, bad messages); report in dist/chaos
	TASKER_CHAOS=full TASKER_CHAOS_OUT=$(CURDIR)/dist/chaos $(GO) test -count=1 -v -timeout 45m -run '^TestChaos$$' ./integration/chaos/

FUZZTIME ?= 10s
fuzz: ## run every fuzz target for FUZZTIME each (default 10s): step messages, templates, notifications, task requests
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeStepMessage$$' -fuzztime $(FUZZTIME) ./protocol/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./template/
	$(GO) test -run '^$$' -fuzz '^FuzzParseEvent$$' -fuzztime $(FUZZTIME) ./queue/
	$(GO) test -run '^$$' -fuzz '^FuzzTaskRequestJSON$$' -fuzztime $(FUZZTIME) ./orchestration/

clean: ## remove build outputs
	rm -rf $(BIN) dist
