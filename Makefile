# The two set-up commands of the README. Both work on a fresh machine with only Python 3.10+.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= runs/demo
STAMP := $(VENV)/.installed

.PHONY: demo results test lint install clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: a bare `torch` requirement would pull GBs of CUDA wheels.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test,lint]'
	touch $(STAMP)

install: $(STAMP)

## Main job: a full simulated joint-modelling run on the bundled data; ends by printing the path
## of its report (runs/demo/report.html: plots, training, per-party and compliance views).
## First the demo issuer's tokens reach the centre's store, verified once, as an identity service
## delivers real ones (`fedcredit consent import`); the run then re-checks them (docs/consent.md).
demo: $(STAMP)
	$(BIN)/fedcredit simulate configs/vertical-lr.toml --deliver-demo-tokens --out $(OUT)

## The README's quality figures, regenerated: `fedcredit simulate` on every shipped training
## config (into runs/results/), then the Markdown rows printed from each run's metrics.json.
## REUSE=1 rebuilds the tables from the runs already there.
results: $(STAMP)
	$(BIN)/python -m simulations.results_table --out runs/results $(if $(REUSE),--reuse,)

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
