# Two commands set Interlock up from a fresh clone: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck bench bench-instructions clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[demo]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/python examples/demo.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# -rs: each skipped test with its reason (say, PostgreSQL or Redis not running).
test: $(VENV)/.installed-dev lint typecheck
	$(BIN)/python -m pytest -q -rs -p no:cacheprovider

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/overhead.py

# Instructions per request (callgrind): the measure to check a request-path change with.
bench-instructions: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/instructions.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
