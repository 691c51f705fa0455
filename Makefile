# qwen-dataset: `make demo` runs the whole graph on a sample batch, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export QWEN_STORAGE_ROOT ?= $(CURDIR)/.storage
# Great Expectations must never phone home.
export GX_ANALYTICS_ENABLED ?= False

.PHONY: setup tools demo test lint dev run-workers bench workbench clean system-deps-demo system-deps-test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

# libGL/GLib for OpenCV, Chromium, and npm for the tests: installed through apt-get as root, else named.
system-deps-demo:
	@scripts/system_deps.sh demo

system-deps-test:
	@scripts/system_deps.sh test

demo: system-deps-demo setup
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/python scripts/demo.py

# The Label Studio editor for the workbench (npm package, never committed).
node_modules/.package-lock.json: package.json package-lock.json
	npm ci --ignore-scripts --no-audit --no-fund

# The real tools the export tests load the files with, each in its own venv under .tools/ (their pins
# clash with the project's): Datumaro, LLaMA-Factory, a Label Studio server. Built once, kept;
# rebuilt when tests/tools pins change. About 2-3 minutes on a cold cache, seconds afterwards.
tools: setup
	$(BIN)/python -m tests.tools

# Guard rails first: lint, format and types, then the suite.
lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: system-deps-test setup node_modules/.package-lock.json lint tools
	$(BIN)/pytest

# The Dagster UI on DAGSTER_HOST:DAGSTER_PORT; the terminal at INFO (the UI keeps every event).
DAGSTER_HOST ?= 127.0.0.1
DAGSTER_PORT ?= 3000

dev: setup
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster dev -w workspace.yaml --host $(DAGSTER_HOST) --port $(DAGSTER_PORT) --log-level info

# Warm run workers for a deployment whose dagster.yaml has deploy/run_workers.yaml (README, "Warm run
# workers"): QWEN_RUN_QUEUE_URL must name the same Redis database as the webserver's and the daemon's.
RUN_QUEUE ?= dagster
RUN_WORKER_CONCURRENCY ?= 4

run-workers: setup
	$(BIN)/python -m deploy.run_workers --queue $(RUN_QUEUE) --concurrency $(RUN_WORKER_CONCURRENCY)

bench: setup
	$(BIN)/python benchmarks/bench_frames.py
	$(BIN)/python benchmarks/bench_ocr.py

# --- review workbench (see README) ---
WORKBENCH_HOST ?= 127.0.0.1
WORKBENCH_PORT ?= 8080
# Server processes: one per core serves more saves at once (each has QWEN_WORKBENCH_THREADS threads and its own pool).
WORKBENCH_WORKERS ?= $${QWEN_WORKBENCH_WORKERS:-2}

workbench: system-deps-test setup node_modules/.package-lock.json
	@mkdir -p $(QWEN_STORAGE_ROOT)
	@test -n "$$QWEN_WORKBENCH_SECRET" || test -s $(QWEN_STORAGE_ROOT)/.workbench_secret || \
		(umask 077 && $(BIN)/python -c "import secrets; print(secrets.token_urlsafe(48))" > $(QWEN_STORAGE_ROOT)/.workbench_secret)
	QWEN_WORKBENCH_SECRET="$${QWEN_WORKBENCH_SECRET:-$$(cat $(QWEN_STORAGE_ROOT)/.workbench_secret)}" \
		$(BIN)/python -m qwen_dataset.workbench serve --host $(WORKBENCH_HOST) --port $(WORKBENCH_PORT) --workers $(WORKBENCH_WORKERS)

clean:
	rm -rf $(VENV) .dagster_home .storage node_modules .tools
