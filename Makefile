# recstop: `make run` starts the whole local stack, `make test` runs the whole suite.
# Both set themselves up (virtualenv, install) on a fresh machine.

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The real folders (recstop/worker, recstop/producers and recstop/sandbox link to them).
LINTED := recstop/__init__.py worker producers vobiz_sandbox harness chaos bench tests scripts

.PHONY: help install promtool run test test-bench test-lowest test-unit test-integration chaos chaos-short bench bench-ci lint format flower clean

help:
	@echo "make run    - the whole local stack, each part in its own process: redis-server (AOF), the Vobiz sandbox"
	@echo "              (unless Vobiz credentials are set), a worker (logs here), Flower, the audit sink (SQLite);"
	@echo "              .run/ holds their data, logs and env.sh. Ctrl-C stops them all, Redis last"
	@echo "make flower - Flower alone, on 127.0.0.1:5555 (against RECSTOP_BROKER_URL)"
	@echo "make test   - the whole test suite, about 4 minutes here (starts its own redis-server, PostgreSQL, sandbox and workers)"
	@echo "make chaos  - the chaos suite, full profile: faults under load, one table (about 9 minutes here)"
	@echo "make bench  - the benchmarks: ten scenarios beside naive Celery and the raw limit (about 15 minutes here)"
	@echo "make lint   - ruff and mypy --strict"

# The pinned sets (deploy/requirements.txt: runtime, requirements-dev.txt: tests and lint) are
# constraints: a new release on PyPI changes nothing here until someone upgrades on purpose
# (pip install -U ..., the suite, then .venv/bin/python deploy/freeze_requirements.py).
PINS := -c deploy/requirements.txt -c requirements-dev.txt
# Every part: `pip install recstop` alone is the producer (redis-py); README "Install" lists the extras.
# editable_mode=compat: a path in a .pth file, which type checkers follow (mypy finds `recstop` from
# any directory), where setuptools' default import hook is invisible to them.
EXTRAS := worker,audit,sandbox

$(STAMP): pyproject.toml deploy/requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(PINS) -e '.[$(EXTRAS),dev]' --config-settings editable_mode=compat
	@touch $(STAMP)

# promtool (checks deploy/prometheus/ in `make test`), from Debian's prometheus package, unpacked
# into the virtualenv: nothing is installed system-wide, no service is started.
PROMTOOL := $(BIN)/promtool
$(PROMTOOL): | $(STAMP)
	@if command -v apt-get >/dev/null 2>&1; then \
	  tmp=$$(mktemp -d) && (cd $$tmp && apt-get download prometheus >/dev/null 2>&1 && dpkg -x prometheus_*.deb x) \
	    && cp $$tmp/x/usr/bin/promtool $(PROMTOOL); rm -rf $$tmp; \
	fi; test -x $(PROMTOOL) || echo "promtool not fetched (no apt-get?): its tests will skip outside CI"

promtool: $(PROMTOOL)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/python -m scripts.run_stack

flower: $(STAMP)
	$(BIN)/celery -A recstop.worker flower --address=127.0.0.1 --port=5555 --max_tasks=10000

# Three test processes share the 2 cores (most tests wait on Redis, the sandbox or a worker); the
# chaos scenarios run after them, alone, so that their timing bounds are measured undisturbed. The
# benchmark harness's own check (every scenario at its ci profile, about 2.5 minutes) is
# `make test-bench`: CI runs it after `make test`, which stays within 5 minutes.
test: $(STAMP) $(PROMTOOL)
	$(BIN)/pytest -q -n 3 --dist loadgroup -m "not chaos and not bench"
	$(BIN)/pytest -q -m chaos

test-bench: $(STAMP)
	$(BIN)/pytest -q -n 1 --dist loadgroup -m bench

# The supported ranges' other end (pyproject.toml; scripts/lowest_pins.py reads their lower bounds):
# a second virtualenv with those versions over the pinned set, running what builds on them: the
# transport and kombu's own suite, the scripts, the producers, Sentinel. CI runs it after make test.
LOWEST := .venv-lowest
LOWEST_TESTS := tests/integration/test_fetch.py tests/integration/test_kombu_contract.py \
  tests/integration/test_consumer_control.py tests/integration/test_stop_flow.py \
  tests/integration/test_lanes.py tests/integration/test_scheduling.py tests/integration/test_poison.py \
  tests/integration/test_celery_native.py tests/integration/test_sentinel.py \
  tests/integration/test_producer_contract.py tests/integration/test_async_producer.py
test-lowest: $(STAMP)
	@mkdir -p .run
	$(BIN)/python -m scripts.lowest_pins > .run/lowest-pins.txt
	grep -v -i -E '^(celery|kombu|redis)==' deploy/requirements.txt > .run/pins-but-ranged.txt
	test -x $(LOWEST)/bin/python || $(PYTHON) -m venv $(LOWEST)
	$(LOWEST)/bin/pip install --quiet --upgrade pip
	$(LOWEST)/bin/pip install --quiet -c .run/pins-but-ranged.txt -c requirements-dev.txt -c .run/lowest-pins.txt \
	  -e '.[$(EXTRAS),dev]' --config-settings editable_mode=compat
	$(LOWEST)/bin/pip list 2>/dev/null | grep -i -E '^(celery|kombu|redis) '
	$(LOWEST)/bin/python -m pytest -q -n 3 --dist loadgroup -p no:cacheprovider $(LOWEST_TESTS)

bench: $(STAMP)
	$(BIN)/python -m bench --profile full --json .run/bench.json

bench-ci: $(STAMP)
	$(BIN)/python -m bench --profile ci --json .run/bench-ci.json

test-unit: $(STAMP)
	$(BIN)/pytest -q tests/unit -m 'not integration'

test-integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

chaos: $(STAMP)
	$(BIN)/python -m chaos --profile full --json .run/chaos.json

chaos-short: $(STAMP)
	$(BIN)/python -m chaos --profile short --json .run/chaos-short.json

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format $(LINTED)
	$(BIN)/ruff check --fix $(LINTED)

clean:
	rm -rf $(VENV) $(LOWEST) .run .pytest_cache .mypy_cache .ruff_cache
