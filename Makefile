# qwen-dataset: `make demo` runs the whole graph on a sample batch, `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
export QWEN_STORAGE_ROOT ?= $(CURDIR)/.storage
# Great Expectations must never phone home.
export GX_ANALYTICS_ENABLED ?= False

.PHONY: setup demo test dev daemon bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/python scripts/demo.py

test: setup
	$(BIN)/pytest

dev: setup
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster dev -w workspace.yaml

bench: setup
	$(BIN)/python benchmarks/bench_frames.py
	$(BIN)/python benchmarks/bench_ocr.py

clean:
	rm -rf $(VENV) .dagster_home .storage
