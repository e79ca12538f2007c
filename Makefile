# tipjar: `make demo` shows it working; `make test` proves it. Both build .venv if missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: install demo test lint unit bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "tipjar needs Python 3.11 or newer")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/tipjar demo

lint: $(STAMP)
	$(VENV)/bin/ruff check bot escrow tests benchmarks
	$(VENV)/bin/ruff format --check bot escrow tests benchmarks
	$(VENV)/bin/mypy

PYTEST_WORKERS ?= auto

test: lint
	$(PY) -m pytest -n $(PYTEST_WORKERS)

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

bench: $(STAMP)
	$(PY) benchmarks/run.py --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis tipjar.db*
