# accord — two entry points: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# llama.cpp is built for a fixed, portable instruction set (x86-64-v3: AVX2/FMA/F16C, no AVX-512 or AMX),
# not for the build machine's own: the same kernels on every CPU (label log-probabilities reproduce across
# machines) and no crash on CPUs whose AMX tiles the kernel does not grant. The wheel is kept in a wheelhouse
# named after these flags, so pip's own cache never hands back a wheel built another way.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := $(if $(filter x86_64,$(shell uname -m)),-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON,-DGGML_NATIVE=OFF)
WHEELHOUSE ?= $(HOME)/.cache/accord/wheels/llama-$(LLAMA_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha1sum | cut -c1-12)
DEMO_EXTRAS := local,report

.PHONY: demo test services test-fast typecheck bench clean

# One venv; each entry point installs the extras it needs (pyproject.toml): the demo `local` and `report`,
# the tests `dev` (every extra, the test tools, mypy and the stubs). A stamp per set, redone when
# pyproject.toml changes. The `local` extra's llama-cpp-python comes from the portable wheelhouse.
define install
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel setuptools
	@echo "installing accord[$(1)] (the first build of llama-cpp-python takes ~10 minutes on 2 cores; it is kept)"
	ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel -q --no-cache-dir --no-deps -w $(WHEELHOUSE) \
		llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install -q --find-links $(WHEELHOUSE) -e '.[$(1)]'
	touch $@
endef

$(VENV)/.installed-demo: pyproject.toml
	$(call install,$(DEMO_EXTRAS))

$(VENV)/.installed-dev: pyproject.toml
	$(call install,dev)

## Set up and run the demo: bundled DICES subset, local SmolLM2 model, metrics table and HTML report.
demo: $(VENV)/.installed-demo
	$(BIN)/accord demo

## Set up and run the whole test suite (starts Redis and PostgreSQL if they are not running). It includes the
## strict type check (tests/unit/test_types.py).
test: $(VENV)/.installed-dev services
	ACCORD_REQUIRE_SERVICES=1 $(BIN)/pytest -q -ra -p no:cacheprovider

services:
	bash deploy/local/ensure_services.sh
	bash tests/e2e/install_browser.sh

## The unit tests only (no services, no model).
test-fast: $(VENV)/.installed-dev
	$(BIN)/pytest -q -m "not slow and not postgres and not redis and not typecheck" tests/unit

## Strict mypy over every module (about a minute; errors listed with the repository's paths).
typecheck: $(VENV)/.installed-dev
	$(BIN)/python tests/typecheck.py

## Benchmarks (printed figures; see the README's table). throughput/enqueue take 15 and 6 minutes, recovery 2.
bench: $(VENV)/.installed-dev services
	$(BIN)/python bench/analysis_suite.py
	$(BIN)/python bench/report.py
	$(BIN)/python bench/api_load.py --duration 20 --workers 16 --streams 4
	$(BIN)/python bench/throughput.py
	$(BIN)/python bench/enqueue.py
	$(BIN)/python bench/recovery.py
	$(BIN)/python bench/local_model.py --items 300

clean:
	rm -rf $(VENV) build *.egg-info
