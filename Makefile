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

build: ## build all binaries into bin/
	$(GO) build -o $(BIN)/ ./cmd/...

test: pg-image ## run every test, integration included (Postgres via testcontainers or TASKER_TEST_DATABASE_URL)
	$(GO) test -count=1 -timeout 30m ./...

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

cross: ## static CGO_ENABLED=0 binaries for linux/amd64, linux/arm64, darwin/arm64 in dist/
	@for p in linux/amd64 linux/arm64 darwin/arm64; do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  echo "cross: $$os/$$arch"; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags='-s -w' -o dist/$$os-$$arch/ ./cmd/... || exit 1; \
	done

clean: ## remove build outputs
	rm -rf $(BIN) dist
