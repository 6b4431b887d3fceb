# Quick start: `make train` (default training run) and `make test` (the whole test suite).
# Both create .venv with the machine's python3 and install the package into it first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test test-fast benchmark docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,export,tune,pretrained,docs]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/python scripts/train.py $(ARGS)

# two workers (pytest-xdist), one per core of the machines we run on; a file's tests share a
# worker, so the module fixtures that train a run train it once. Files start in the order
# tests/conftest.py gives them (the slowest first), not xdist's (the most tests first, which
# left the slow two-test files to start last while the other worker idled)
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder -m "not slow"

benchmark: $(STAMP)
	$(BIN)/python scripts/benchmark.py suite --out outputs/benchmark/suite.json $(ARGS)

# the docs/ pages as a site in site/; strict: a warning (a broken link, a missing page) fails
docs: $(STAMP)
	$(BIN)/python -m mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache site
