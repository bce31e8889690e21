# `make test` builds a fresh virtual environment (CPU torch first, so pip never pulls CUDA wheels)
# and runs the linter and the whole test suite.
#
# TORCH_INDEX_URL: where the CPU build of torch comes from (PyTorch's CPU wheel index by default);
# empty means pip's configured index (PyPI or its mirror), as CI does (.ci/run).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_INDEX_URL ?= https://download.pytorch.org/whl/cpu

.PHONY: test lint venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch==2.13.0

venv: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,ray]'  # the Ray tests always run

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

clean:
	rm -rf $(VENV)
