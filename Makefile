# reelhouse: every verb a user needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
EVENTS ?= 100000
FAULT_RATE ?= 0.01
BENCH_EVENTS ?= 1000000
LAYER ?= silver
BENCH_KEEP ?=
BENCH_ROUNDS ?=

# Prefect keeps its database and settings in the stack's state folder (.stack, git-ignored,
# or REELHOUSE_STACK_DIR), where python -m local_stack clean deletes them.
export PREFECT_HOME := $(abspath $(or $(REELHOUSE_STACK_DIR),.stack))/prefect
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 120
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_LOGGING_LEVEL := INFO
# Concurrency leases (flows.guard's workspace lock) on disk beside the database: they outlive
# a restarted server, and a server reaps the expired leases of ephemeral-API runs too.
export PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE := prefect.server.concurrency.lease_storage.filesystem

VENV_STAMP := $(VENV)/.installed
JVM_STAMP := .cache/jvm/.resolved
NODE_STAMP := local_stack/node/node_modules/.installed
BROWSER_STAMP := .cache/browser.installed
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: prefect-up prefect-down help setup stack-up stack-down stack-status test test-unit lint local-run bench profile workspaces quality-report azure-preflight clean

help: ## list the verbs
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

setup: $(VENV_STAMP) $(JVM_STAMP) $(NODE_STAMP) $(BROWSER_STAMP) ## install Python deps, JVM jars, the driver's class archive, Azurite, Chromium (idempotent)
	@# The Spark driver's class-data-sharing archive (about 70-100 s to build; a session
	@# starts 3-4 s sooner, and with its first Delta write and read about 8 s). Checked at
	@# every setup (0.3 s): one missing, or no longer the size it was built with, is built
	@# again. Never fails setup: without it drivers start as before.
	@$(PY) -m local_stack.class_archive
	@# Prefect creates its home without parents: on a fresh clone it warned on every import.
	@mkdir -p $(PREFECT_HOME)

$(VENV_STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

$(JVM_STAMP): local_stack/jvm/pom.xml $(VENV_STAMP)
	$(PY) -m local_stack.jvm resolve
	touch $@

$(NODE_STAMP): local_stack/node/package.json local_stack/node/package-lock.json
	cd local_stack/node && npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian's Chromium and ChromeDriver, for the report's real-browser test.
$(BROWSER_STAMP):
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver)
	mkdir -p .cache && touch $@

stack-up: setup ## start Kafka (KRaft) and Azurite as native processes
	$(PY) -m local_stack up

stack-down: ## stop the services this project started
	$(PY) -m local_stack down

stack-status: ## show each service, pid, ports and health
	$(PY) -m local_stack status

test: setup ## run every test (unit, integration, e2e); starts the stack itself
	$(PY) -m pytest $(PYTEST_ARGS) || [ $$? -eq 5 ]

test-unit: setup ## run the unit tests only (no services; about 2 min, more than half of it the gate tests' local Spark)
	$(PY) -m pytest -m unit $(PYTEST_ARGS) || [ $$? -eq 5 ]

lint: setup ## ruff: lint and import order
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

local-run: setup ## stack up, then simulate -> bronze -> silver -> gold -> report (Prefect flow)
	$(PY) -m flows.local_run --events $(EVENTS) --fault-rate $(FAULT_RATE)

prefect-up: stack-up ## Prefect server on 127.0.0.1:4200 + process worker + deployments
	$(PY) -m local_stack prefect-up

prefect-down: ## stop the Prefect worker and server (refused while runs are active; FORCE=1 stops them)
	$(PY) -m local_stack prefect-down $(if $(FORCE),--force)

azure-preflight: $(VENV_STAMP) ## check an Azure deployment (config, Key Vault, secrets, Event Hubs, storage); needs Python only
	$(PY) -m azure_profile.preflight

bench: setup ## benchmark on an isolated workspace -> bench/results/latest.json
	$(PY) -m bench.run --events $(BENCH_EVENTS) $(if $(filter 1 true yes,$(BENCH_KEEP)),--keep) $(if $(BENCH_ROUNDS),--bronze-rounds $(BENCH_ROUNDS))

profile: setup ## where one layer's time goes, Spark job by job (LAYER=silver; BENCH_EVENTS)
	$(PY) -m bench.profile --layer $(LAYER) --events $(BENCH_EVENTS)

workspaces: setup ## list the local stack's workspaces: blobs, size, topics
	$(PY) -m local_stack workspaces

quality-report: setup ## build the static quality report and print its path
	$(PY) -m quality.report

clean: ## stop Prefect and the stack, then delete their state (broker data, lake, logs; FORCE=1 with active runs)
	$(PY) -m local_stack prefect-down $(if $(FORCE),--force)
	-$(PY) -m local_stack down
	$(PY) -m local_stack clean
