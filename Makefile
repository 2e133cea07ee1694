# Two entry points for a fresh machine; both set up (or reuse) .venv first.
PY := .venv/bin/python

.PHONY: setup benchmark test test-all

setup:
	@bash tools/bootstrap.sh

benchmark: setup
	$(PY) tools/benchmark.py $(ARGS)

test: setup
	$(PY) -m pytest $(ARGS)

test-all: setup
	$(PY) -m pytest -m "slow or not slow" $(ARGS)
