# The two set-up commands of the README. Both work on a fresh machine with only Python 3.10+.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= runs/demo
STAMP := $(VENV)/.installed

.PHONY: demo test lint install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: a bare `torch` requirement would pull GBs of CUDA wheels.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

## Main job: a full simulated joint-modelling run on the bundled data.
demo: $(STAMP)
	$(BIN)/fedcredit simulate configs/vertical-lr.toml --out $(OUT)

## Static checks, run first by `make test`: style and lint (ruff), layer and cycle contracts
## (import-linter, see [tool.importlinter] in pyproject.toml), types (mypy).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy

## Test suite (slow benchmarks excluded by the `slow` marker), after the static checks.
test: lint
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
