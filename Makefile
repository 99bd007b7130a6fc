# Convenience targets; the README's two Quick start commands need nothing but Python 3.11+.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: help install test test-all example validate ci clean

help:
	@echo "make install   create $(VENV) and install mfpde with the test extras"
	@echo "make test      run the tests (slow ones deselected)"
	@echo "make test-all  run every test including the slow ones"
	@echo "make example   run the bundled two-layer example -> run.h5, run.png"
	@echo "make validate  quick validation report -> validation-report/"
	@echo "make ci        what CI runs: the README test command in a fresh environment"
	@echo "make clean     remove caches and outputs"

$(BIN)/mfpde:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -e ".[test]"

install: $(BIN)/mfpde

test: install
	$(BIN)/python -m pytest

test-all: install
	$(BIN)/python -m pytest -m "slow or not slow"

example: install
	$(BIN)/mfpde run validation/example_two_layer.toml -o run.h5 --set output.overwrite=true
	$(BIN)/mfpde plot run.h5 -o run.png

validate: install
	$(BIN)/mfpde validate --quick -o validation-report

ci:
	.ci/run

clean:
	rm -rf .pytest_cache .hypothesis build dist *.egg-info validation-report run.h5 run.png
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
