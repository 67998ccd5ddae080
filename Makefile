# The two commands a new user needs: `make demo` and `make test`. Each installs what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test demo bench leak lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test]"
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q

demo: install
	$(BIN)/aiohttp-llm-tracing demo

bench: install
	$(BIN)/python benchmarks/overhead.py
	$(BIN)/python benchmarks/session_create.py
	$(BIN)/python benchmarks/registry.py
	$(BIN)/python benchmarks/llm_peers.py
	$(BIN)/python benchmarks/sse_chunk.py
	$(BIN)/python benchmarks/gc_cost.py
	@if command -v valgrind >/dev/null; then $(BIN)/python benchmarks/instructions.py; \
	else echo "benchmarks/instructions.py skipped: it needs valgrind"; fi

leak: install
	$(BIN)/python benchmarks/leak.py --requests 200000

lint: install
	$(BIN)/ruff check src tests benchmarks examples
	$(BIN)/ruff format --check src tests benchmarks examples
	$(BIN)/mypy src

format: install
	$(BIN)/ruff format src tests benchmarks examples
	$(BIN)/ruff check --fix src tests benchmarks examples

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
