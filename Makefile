# The two commands: `make bench` (set up, quick suite, report) and `make test` (set up, tests, gate).
VENV ?= .venv
SUITE ?= scenarios/quick.toml
# The packages held to type hints (mypy, configured in pyproject.toml).
TYPED ?= harness runtime vm hostkit imagestore

.PHONY: setup bench test lint clean baseline

setup:
	bash scripts/setup.sh

bench: setup
	$(VENV)/bin/cvbench run $(SUITE) --report

test: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(TYPED) --ignore-missing-imports
	$(VENV)/bin/python -m pytest
	bash scripts/quick-gate.sh

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy $(TYPED) --ignore-missing-imports

clean:
	$(VENV)/bin/cvbench clean

# Run the quick suite and make it the committed CI baseline (results/baseline/).
baseline: setup
	$(VENV)/bin/cvbench baseline "$$($(VENV)/bin/cvbench run $(SUITE) --quiet | tail -n 1)"
