# Tollgate: the commands a developer and CI need. See README.md.
SHELL := /bin/bash
CARGO ?= cargo
SERVICES := tests/scripts/ensure-services.sh

.PHONY: build run test lint fmt bench ci services

build:
	$(CARGO) build --workspace --bins

## run: a control plane (SQLite), a data plane (proxy :8000, status :8100) and an echo upstream on :3000
run: build
	tests/scripts/run-local.sh

## services: make sure PostgreSQL and Redis answer (start or install them)
services:
	@$(SERVICES) >/dev/null

## test: the whole suite against real PostgreSQL and Redis
test:
	@urls=$$($(SERVICES)) && \
	export DATABASE_URL=$${DATABASE_URL:-$$(sed -n 1p <<<"$$urls")} && \
	export REDIS_URL=$${REDIS_URL:-$$(sed -n 2p <<<"$$urls")} && \
	echo "DATABASE_URL=$$DATABASE_URL REDIS_URL=$$REDIS_URL" && \
	{ python3 -c 'import jwt' 2>/dev/null || python3 -m pip install --quiet 'pyjwt[crypto]'; } && \
	$(CARGO) build --workspace --bins && \
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## bench: release-mode benchmarks with same-run baselines (nginx), see tests/bench/
bench:
	tests/bench/run.sh

ci: lint test
