# geotel: the two commands a new user needs are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: help venv demo up test test-quick lint bench accuracy schemas docs clean

help:
	@echo "make demo      - install, start the pipeline with simulated reps (~1 min), print per-rep figures"
	@echo "make test      - install and run all tests (starts the real broker and chDB)"
	@echo "make test-quick- unit tests only"
	@echo "make up        - start the whole pipeline on this machine (Ctrl-C stops it)"
	@echo "make bench     - benchmarks (RESULT lines, bench/results.json)"
	@echo "make accuracy  - accuracy harness against the simulator's ground truth"
	@echo "make lint      - ruff and mypy"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/geotel demo

up: $(STAMP)
	$(VENV)/bin/geotel up

test: $(STAMP)
	$(PY) -m pytest -q

test-quick: $(STAMP)
	$(PY) -m pytest -q -m "not integration and not slow and not browser"

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy schemas processors sinks streams geo simulator

bench: $(STAMP)
	$(PY) bench/run.py

accuracy: $(STAMP)
	$(PY) bench/bench_accuracy.py

schemas: $(STAMP)
	$(VENV)/bin/geotel schemas export

docs: $(STAMP)
	$(VENV)/bin/geotel config docs

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
