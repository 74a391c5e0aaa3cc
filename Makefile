# Tollgate: the commands a developer and CI need. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
SERVICES := tests/scripts/ensure-services.sh

.PHONY: build run reset test lint fmt bench ci services

build:
	$(CARGO) build --workspace --bins

## run: an echo upstream (:3000), a control plane (Admin API :8001, cluster :8005, SQLite) and a
## data plane (proxy :8000, status :8100), each started once the previous answers; state in .tollgate/
run: build
	tests/scripts/run-local.sh

## reset: forget what `make run` kept (certificates, database, cache, logs in .tollgate/)
reset:
	rm -rf .tollgate

## services: make sure PostgreSQL and Redis answer (start or install them)
services:
	@$(SERVICES) >/dev/null

## test: the whole suite against real PostgreSQL and Redis, then schemathesis over the Admin API
test:
	@urls=$$($(SERVICES)) && \
	export DATABASE_URL=$${DATABASE_URL:-$$(sed -n 1p <<<"$$urls")} && \
	export REDIS_URL=$${REDIS_URL:-$$(sed -n 2p <<<"$$urls")} && \
	echo "DATABASE_URL=$$DATABASE_URL REDIS_URL=$$REDIS_URL" && \
	{ python3 -c 'import jwt' 2>/dev/null || python3 -m pip install --quiet 'pyjwt[crypto]'; } && \
	$(CARGO) test --workspace --no-fail-fast && \
	tests/scripts/schemathesis.sh && \
	tests/scripts/run-smoke.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## bench: release-mode benchmarks with same-run baselines (nginx), see tests/bench/
bench:
	tests/bench/run.sh

ci: lint test
