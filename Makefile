# Two commands do everything on a fresh machine: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test lint types pytest migrate db-start db-stop clean bench-eligibility bench-ledger \
	bench-ledger-rounds bench-ledger-instructions bench-export bench-aggregates bench-tracing \
	token client backup restore browser compose-tool pooler-tool test-resilience

$(BIN)/python:
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required (found %s)" % sys.version.split()[0]'
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devtools.devrun

demo: $(STAMP)
	$(BIN)/python -m devtools.devrun --demo

migrate: $(STAMP)
	$(BIN)/python -m devtools.devrun --migrate-only

# an access token for a local client of `make run` (ids in .data/auth/clients.json): make token CLIENT=dev-officer
token: $(STAMP)
	@$(BIN)/python -m devtools.devauth token $(or $(CLIENT),dev-admin)

# the OAuth2 client admin CLI on the local database, e.g.
#   make client ARGS="create --name 'Vendor X' --scope vendor --org 914403001922038216"
client: $(STAMP)
	@$(BIN)/python -m devtools.devrun --identity $(ARGS)

# pg_dump / pg_restore of the three schemas (DATABASE_URL, or the local stack's database)
backup: $(STAMP)
	$(BIN)/python -m devtools.backup dump $(FILE)

# into a fresh database only: make restore FILE=backups/longgang-….dump DATABASE_URL=…
restore: $(STAMP)
	@test -n "$(FILE)" || (echo "usage: make restore FILE=backups/longgang-….dump" && exit 2)
	$(BIN)/python -m devtools.backup restore $(FILE)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

# Debian's Chromium (and a CJK font for its screenshots) for the dashboard's browser test, installed once when
# absent (about 25 s). Playwright drives /usr/bin/chromium and never downloads a browser. If it cannot be
# installed (not root, no apt), tests/dashboard fails and says so: it is never skipped.
browser:
	@test -x /usr/bin/chromium && fc-list :lang=zh 2>/dev/null | grep -q . || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-microhei \
			>/dev/null) || \
		echo "chromium could not be installed (apt-get install chromium): the dashboard's browser test will fail"

# Debian's docker-compose (1.29) reads and validates docker-compose.yml without a Docker engine: tests/test_compose.py
# runs it. Installed once when absent; if it cannot be (not root, no apt), that test fails and says so.
compose-tool:
	@command -v docker-compose >/dev/null || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null) || \
		echo "docker-compose could not be installed (apt-get install docker-compose): tests/test_compose.py will fail"

# Debian's PgBouncer: tests/pooler/ runs the services through it in both pool modes (issue #15). Installed once when
# absent; if it cannot be, those tests fail and say so.
pooler-tool:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer >/dev/null) || \
		echo "pgbouncer could not be installed (apt-get install pgbouncer): tests/pooler/ will fail"

# The suite in several processes (pytest-xdist), a test file to a worker: one pytest process keeps a core busy
# while the other and PostgreSQL's sit half idle (waiting on service processes, sleeps, the network); on two cores
# two workers take ~7 minutes against ~10. `auto`: a worker per core, as many as the server's max_connections
# allow (tests/conftest.py); TEST_WORKERS=0 runs the suite in this process alone. A test that takes 10 minutes
# (the slowest take ~15 s) is stuck: it fails, with every thread's stack, instead of holding CI for ever.
TEST_WORKERS ?= auto
pytest: $(STAMP) browser compose-tool pooler-tool
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile --timeout 600 $(PYTEST_ARGS)

test: lint types pytest

# issue #7: a few thousand random operations on two processes of each service while eligibility is stopped, a
# vouchers process killed and PostgreSQL restarted, then the checker (about 2-3 minutes); slow and broken peers
# behind a fault proxy; a vouchers process killed while a group-commit batch is in flight (issue #16).
# RESILIENCE_SEED=<n> replays a run (tests/resilience/test_history.py lists the knobs).
# The files are named: pyproject's addopts keep the slow ones out of `make test`, and named files override that.
test-resilience: $(STAMP)
	$(BIN)/pytest -v $(sort $(wildcard tests/resilience/test_*.py)) $(PYTEST_ARGS)

db-start: $(STAMP)
	@$(BIN)/python -m devtools.devdb start

db-stop: $(STAMP)
	@$(BIN)/python -m devtools.devdb stop

bench-eligibility: $(STAMP)
	$(BIN)/python -m bench.eligibility_bench --profile

# wrk is the load generator (a Debian package); without it the benchmark uses its slower Python one
bench-ledger: $(STAMP) pooler-tool
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
		echo "wrk could not be installed: bench-ledger falls back to its Python load generator"
	$(BIN)/python -m bench.ledger_bench --profile --group-commit both

# issue #16's target decided on a drifting machine: pgbench, one and two vouchers processes in short runs taking
# turns over rounds, medians of the per-round ratios (bench/ledger_rounds.py; ARGS='--rounds 6 --seconds 10')
bench-ledger-rounds: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk \
		>/dev/null) || echo "wrk could not be installed: bench-ledger-rounds falls back to its Python load generator"
	$(BIN)/python -m bench.ledger_rounds $(ARGS)

# PostgreSQL's instructions per group-commit batch under valgrind, unmoved by the host's speed
# (bench/ledger_batch_instructions.py; ARGS='--compare REV' beside a revision's batch functions)
bench-ledger-instructions: $(STAMP)
	@command -v valgrind >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		valgrind >/dev/null)
	$(BIN)/python -m bench.ledger_batch_instructions $(ARGS)

# the redemption path with tracing off and on (OTLP to a local sink), alternating, in one run (docs/benchmarks.md)
bench-tracing: $(STAMP)
	@command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk \
		>/dev/null) || echo "wrk could not be installed: bench-tracing falls back to its Python load generator"
	$(BIN)/python -m bench.tracing_bench $(ARGS)

# 1,000,000 ledger entries exported as NDJSON and CSV over HTTP: rate and the service's peak memory
bench-export: $(STAMP)
	$(BIN)/python -m bench.export_bench

# the dashboard's aggregates on 10,000,000 ledger entries and 100,000 applications (built by SQL):
# the projector's catch-up, p50/p95 per endpoint over HTTP, and the same figures by a plain scan
bench-aggregates: $(STAMP)
	$(BIN)/python -m bench.aggregates_bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
