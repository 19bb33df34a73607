# Two entry points; each creates the virtualenv on first use.
#   make demo   train a small building model on the embedded sample and map a GeoTIFF scene
#   make test   the default test suite (what CI runs)
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export NO_ALBUMENTATIONS_UPDATE := 1

.PHONY: install test test-all demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=23"
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -m "not slow and not gpu"

test-all: $(STAMP)
	$(PY) -m pytest

demo: $(STAMP)
	$(VENV)/bin/rsfm demo --output demo_output

bench: $(STAMP)
	$(PY) benchmarks/backbone_throughput.py

clean:
	rm -rf $(VENV) demo_output .pytest_cache
