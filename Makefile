# accord — two entry points: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test services test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	@echo "installing accord (the first build of llama-cpp-python takes ~10 minutes on 2 cores; pip caches it)"
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

## Set up and run the demo: bundled DICES subset, local SmolLM2 model, metrics table and HTML report.
demo: $(STAMP)
	$(BIN)/accord demo

## Set up and run the whole test suite (starts Redis and PostgreSQL if they are not running).
test: $(STAMP) services
	$(BIN)/pytest -q -ra -p no:cacheprovider

services:
	bash deploy/local/ensure_services.sh
	bash tests/e2e/install_browser.sh

## The unit tests only (no services, no model).
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not slow and not postgres and not redis" tests/unit

## Benchmarks (printed figures; see the README's table). throughput/enqueue take 15 and 6 minutes, recovery 2.
bench: $(STAMP) services
	$(BIN)/python bench/analysis_suite.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/api_load.py --duration 20 --workers 16 --streams 4
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/enqueue.py
	$(BIN)/python bench/recovery.py

clean:
	rm -rf $(VENV) build *.egg-info
