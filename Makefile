# Quick start: `make demo` (set up, then run the built-in default job) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[torch,test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(PY) -m asva_jax.demo --config configs/demo.py

test: setup
	$(PY) -m pytest -q
