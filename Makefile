# The two commands: `make dev` runs the platform, `make test` runs every test. Both install what is missing.
PYTHON_BIN ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CEPER := $(VENV)/bin/ceper
INSTALLED := $(VENV)/.installed
SYSTEM_DEPS := $(VENV)/.system-deps

.PHONY: dev test lint install system-deps kafka keycloak contracts bench clean help

help:
	@echo "make dev    run Kafka and the five services with the demo (Ctrl-C stops them)"
	@echo "make test   check the house rules (make lint), then run every test against the real Kafka broker, SQLite and PostgreSQL"
	@echo "make bench  run the benchmarks in bench/"

$(INSTALLED): pyproject.toml
	@test -x $(PY) || $(PYTHON_BIN) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	@touch $@

install: $(INSTALLED)

$(SYSTEM_DEPS): deploy/install-system-deps.sh
	@mkdir -p $(VENV)
	bash deploy/install-system-deps.sh
	@touch $@

system-deps: $(SYSTEM_DEPS)

kafka: install system-deps
	$(CEPER) kafka fetch

# The Keycloak distribution the interoperability test runs (once into the user cache).
keycloak: install system-deps
	$(CEPER) keycloak fetch

dev: kafka
	$(CEPER) dev

# The house rules: import contracts, lint and format, types. Each fails the build on a violation.
lint: install
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Two test processes (pytest-xdist), each starting its own broker, PostgreSQL and identity provider: most tests wait on
# a server, so two share the machine's two cores well. `make test PYTEST_WORKERS=0` runs them in one process.
PYTEST_WORKERS ?= 2

test: kafka keycloak lint
	$(PY) -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

contracts: install
	$(CEPER) contracts export

bench: kafka
	$(PY) bench/backbone.py

clean:
	rm -rf var .pytest_cache
