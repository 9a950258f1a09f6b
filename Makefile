# The two commands of the README. Both create .venv from a fresh clone when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-fast test-heavy bench setup clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

setup: $(BIN)/.installed

demo: setup
	$(BIN)/immunopd demo --out-dir out

# every test but the few "heavy" ones (3+ minutes each), which CI's 90 minutes no longer hold
test: setup
	$(BIN)/python -m pytest -m "not heavy"

test-heavy: setup
	$(BIN)/python -m pytest -m heavy

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python bench/simulate.py
	$(BIN)/python bench/fit.py
	$(BIN)/python bench/trial.py
	$(BIN)/python bench/sensitivity.py

clean:
	rm -rf $(VENV) out .pytest_cache
