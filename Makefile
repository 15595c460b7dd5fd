# Mengka — the two commands: `make run` (the platform, embedded default, with the channel simulator) and `make test` (the whole suite).
# Without DATABASE_URL both use the embedded PostgreSQL server in var/postgres, started and stopped by the processes using it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
SIMULATOR_PORT ?= 8100

.PHONY: install run test browser citus-test lint format typecheck check ci-checks migrations-check compose-check messages clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Ports: PORT and SIMULATOR_PORT, from the environment or the command line (make run PORT=8001 SIMULATOR_PORT=8101).
# Quiet on purpose: a line for the database, the simulator's line, one progress bar per demo step, then the demo's
# addresses and logins (seed_demo prints them last, just before runserver says where it listens; its production
# warning is left out, as make run is for development only).
run: install
	@mkdir -p var
	@# The channel simulator runs beside the site (the demo's payments go through it) and stops when runserver does.
	@$(PY) -m simulator --host $(HOST) --port $(SIMULATOR_PORT) --db var/simulator.sqlite3 & sim=$$!; \
	trap 'kill $$sim 2>/dev/null; wait $$sim 2>/dev/null' EXIT INT TERM; \
	export SIMULATOR_URL=http://$(HOST):$(SIMULATOR_PORT) DJANGO_RUNSERVER_HIDE_WARNING=true; \
	echo "Migrating the database (the first run creates it in var/postgres) ..."; \
	$(PY) manage.py migrate --noinput --verbosity 0 && \
	$(PY) manage.py seed_demo --site http://$(HOST):$(PORT) && \
	$(PY) manage.py runserver $(HOST):$(PORT)

test: install
	DJANGO_SETTINGS_MODULE=settings.test $(VENV)/bin/pytest

# The browser suite alone (tests/browser: Playwright driving Debian's chromium, never a downloaded browser), at a
# desktop's and a phone's size; screenshots in var/screenshots/<size>/. As root, chromium and a CJK font are installed
# first when missing; otherwise a missing chromium skips the tests with the reason (make test runs them too).
browser: install
	@if ! command -v chromium >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-wqy-zenhei; fi
	DJANGO_SETTINGS_MODULE=settings.test $(VENV)/bin/pytest tests/browser -m browser

# The ledger's tests on Citus, the ledger's accounts and entries distributed (docs/scaling.md, "Citus"): starts the
# local coordinator and workers (scripts/citus/citus.sh start, as root the first time), makes test_mengka_citus_ledger
# on every node, migrates and distributes it, and runs the ledger's test files against the coordinator. Not in CI:
# 2 to 10 minutes on two cores depending on their load, and Citus is built from its source release first.
citus-test: install
	scripts/citus/test.sh

lint: install layers
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

.PHONY: layers
layers: install
	$(VENV)/bin/lint-imports --no-logo

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: install
	@# mypy's Django plugin imports the settings but never connects: a placeholder URL keeps it from starting the
	@# embedded database, which a type check would otherwise leave running (mypy ends without its exit handlers).
	DATABASE_URL=$${DATABASE_URL:-postgres://typecheck.invalid/none} $(VENV)/bin/mypy .

migrations-check: install
	$(PY) manage.py makemigrations --check --dry-run

compose-check: install
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml

messages: install
	$(PY) manage.py makemessages -l zh_Hans -l en --ignore=.venv --ignore=var
	$(PY) manage.py compilemessages --ignore=.venv

clean:
	@# The embedded PostgreSQL server stops with the last process using it; one still running is stopped first.
	if [ -x $(PY) ] && [ -d var/postgres ]; then $(PY) -m settings.embedded stop var/postgres; fi
	rm -rf $(VENV) var/*.sqlite3 var/postgres .pytest_cache .mypy_cache .ruff_cache
