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

# The built-in demo (docs/demo.md): about 11 minutes on 2 idle CPU cores; rerun to resume.
DEMO_WORKDIR ?= outputs/demo

demo: setup
	$(PY) -m asva_jax.demo --workdir $(DEMO_WORKDIR)

# The import rules first (.importlinter, about a second), then two workers, each test file whole on
# one of them (module fixtures are built once).
test: setup
	$(VENV)/bin/lint-imports .importlinter --no-cache
	$(PY) -m pytest -q -n 2 --dist loadfile
