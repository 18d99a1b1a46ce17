# ChatPic — `make run` starts everything locally; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install run admin test test-unit test-integration test-browser browser prometheus bench-scan bench-throughput bench-ingest bench-index bench-reveal bench-rooms lint format typecheck check bench clean fuzz load

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-17s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "ChatPic needs Python 3.11 or newer (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[local,dev]'
	@touch $(STAMP)

install: $(STAMP) ## Create .venv and install ChatPic with the local broker and database

run: $(STAMP) ## Start broker, database, all services and Prometheus if installed; prints the URLs (Ctrl-C stops)
	$(PY) -m deploy.local.stack

admin: $(STAMP) ## Create a review-console admin on the running stack: make admin USER=name (prints its password)
	CHATPIC_MONGO_URI="$${CHATPIC_MONGO_URI:-mongodb://127.0.0.1:$${CHATPIC_MONGO_PORT:-27117}/}" \
	  $(PY) -m services.review.cli create-admin "$(USER)"

test: $(STAMP) browser prometheus ## Run every test (starts its own broker, database and services on free ports)
	CHATPIC_REQUIRE_BROWSER=1 CHATPIC_REQUIRE_PROMETHEUS=1 $(PY) -m pytest -q -p no:cacheprovider

test-unit: $(STAMP) ## Unit tests only (no servers)
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

test-integration: $(STAMP) ## Integration and end-to-end tests (real broker, database, model)
	$(PY) -m pytest -q -p no:cacheprovider tests/integration

test-browser: $(STAMP) browser ## Browser tests of the pages (Playwright driving Debian's Chromium)
	CHATPIC_REQUIRE_BROWSER=1 $(PY) -m pytest -q -p no:cacheprovider tests/browser

browser: ## Install Debian's Chromium for the browser tests if it is missing (never a downloaded one)
	@if [ ! -x "$${CHATPIC_CHROMIUM:-/usr/bin/chromium}" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Chromium (Debian package) for the browser tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Chromium is missing: install Debian's 'chromium' package (or set CHATPIC_CHROMIUM)"; exit 1; fi; \
	fi

prometheus: ## Install Debian's Prometheus (prometheus + promtool) for make run and the rule tests if missing
	@if ! command -v promtool >/dev/null || ! command -v "$${CHATPIC_PROMETHEUS_BIN:-prometheus}" >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Prometheus (Debian package) for make run and the rule tests..."; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	    if [ -d /run/systemd/system ]; then systemctl disable --now prometheus >/dev/null 2>&1 || true; \
	    elif command -v invoke-rc.d >/dev/null; then invoke-rc.d prometheus stop >/dev/null 2>&1 || true; fi; \
	  else echo "Prometheus is missing: install Debian's 'prometheus' package (or set CHATPIC_PROMETHEUS_BIN)"; exit 1; fi; \
	fi

lint: $(STAMP) ## ruff lint and format check
	$(VENV)/bin/ruff check services deploy tests bench
	$(VENV)/bin/ruff format --check services deploy tests bench

format: $(STAMP) ## Apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix services deploy tests bench
	$(VENV)/bin/ruff format services deploy tests bench

typecheck: $(STAMP) ## mypy --strict over services and deploy
	$(VENV)/bin/mypy

check: lint typecheck test ## Everything CI should be happy with

bench: bench-scan bench-throughput bench-ingest bench-index bench-reveal bench-rooms ## All benchmarks (ratios against baselines measured in the same run)

bench-scan: $(STAMP) ## Scanner decode+score against nudenet's own detector
	$(PY) -m bench.scan_bench

bench-throughput: $(STAMP) ## Scanner images/s with 1 and 2 processes against the reference
	$(PY) -m bench.scan_throughput

bench-ingest: $(STAMP) ## Ingest re-encode against naive Pillow and libvips (installs pyvips + libvips42)
	@if ! $(PY) -c 'import pyvips' 2>/dev/null; then \
	  if ! ldconfig -p | grep -q libvips.so.42 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libvips42 >/dev/null; fi; \
	  $(PY) -m pip install --quiet -e '.[bench]'; fi
	$(PY) -m bench.ingest_bench

bench-index: $(STAMP) ## Bank matching: multi-index hashing vs numpy brute force and faiss (1M, 10M)
	@$(PY) -c 'import faiss' 2>/dev/null || $(PY) -m pip install --quiet faiss-cpu
	$(PY) -m bench.index_bench

bench-reveal: $(STAMP) ## Reveal+serve via links (real database) vs the same bytes as a static file
	$(PY) -m bench.reveal_bench

bench-rooms: $(STAMP) ## Room delivery latency, 200 clients in 10 rooms, vs a bare WebSocket hub
	$(PY) -m bench.rooms_bench

fuzz: $(STAMP) ## Long hostile-input campaign on the intake (FUZZ_EXAMPLES=20000 FUZZ_SECONDS=1800); failing inputs go to var/fuzz/
	$(PY) -m tests.fuzz.campaign

load: $(STAMP) ## Uploaders + viewers against the local stack for a fixed time (LOAD_UPLOADERS=8 LOAD_VIEWERS=16 LOAD_SECONDS=60; LOAD_ATTACH=1 for a running make run); JSON in var/load/
	$(PY) -m bench.load

clean: ## Remove local data (var/) — the database and logs
	rm -rf var
