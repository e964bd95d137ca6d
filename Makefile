# The default target is what CI runs: lint, type check, tests.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: check venv lint typecheck test run sim bench clean

check: lint typecheck test

$(BIN)/jtrades: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/jtrades

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	$(BIN)/mypy jtrades bench

# Two workers (-n auto: one per core): every test has its own database, so they share nothing.
test: venv
	$(BIN)/pytest -q -n auto

run: venv
	$(BIN)/jtrades serve

sim: venv
	$(BIN)/jtrades sim

bench: venv
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
