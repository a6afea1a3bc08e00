# retort: `make demo` runs the main job, `make test` the tests. Each creates or refreshes .venv by itself.
VENV     ?= .venv
PY       := $(VENV)/bin/python
GLUE_DIR ?= ../shared/data/glue
THREADS  ?= 2
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-slow lint clean-venv

# The stamp is rebuilt whenever pyproject.toml or the constraints (the lock) change.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/retort demo --glue-dir $(GLUE_DIR) --threads $(THREADS)

test: setup
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

clean-venv:
	rm -rf $(VENV)
