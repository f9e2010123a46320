# Attest: `make run` starts the whole product on embedded defaults, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: install run test lint browser-deps ocr-deps clean

install: $(STAMP) ocr-deps

# Re-installs when pyproject.toml changes. pip (not uv/poetry) so the local torch CPU wheel
# folder (PIP_FIND_LINKS) is honoured where a machine has one.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[embedded,dev]"
	@touch $(STAMP)

# The suite also runs the LangChain baselines of bench/ (tests/test_bench_records.py), so it
# needs the bench extra; `make run` does not.
$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[embedded,dev,bench]"
	@touch $(BENCH_STAMP)

run: install
	$(PY) -m launcher

# Debian's Chromium drives the browser tests; installed here when missing and we are root.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "Installing chromium for the browser tests (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	      || echo "WARNING: could not install chromium; browser tests will fail under CI=true"; \
	  else \
	    echo "WARNING: /usr/bin/chromium missing and cannot apt-get it; browser tests will fail under CI=true"; \
	  fi; \
	fi

# Tesseract (OCR of scanned PDFs and images) and poppler's pdftoppm (renders PDF pages for it),
# from Debian, installed here when missing and we are root.
ocr-deps:
	@if ! command -v tesseract >/dev/null || ! command -v pdftoppm >/dev/null \
	    || [ -z "$$(ls /usr/share/tesseract-ocr/*/tessdata/eng.traineddata 2>/dev/null)" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
	    echo "Installing tesseract-ocr and poppler-utils for OCR (apt-get)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      tesseract-ocr tesseract-ocr-eng poppler-utils >/dev/null) \
	      || echo "WARNING: could not install tesseract-ocr; scanned pages will not be read and OCR tests fail under CI=true"; \
	  else \
	    echo "WARNING: tesseract-ocr/poppler-utils missing and cannot apt-get them; scanned pages will not be read and OCR tests fail under CI=true"; \
	  fi; \
	fi

test: lint $(BENCH_STAMP) browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# Lint: ruff (rules in pyproject.toml), the formatter, mypy over every package (django-stubs,
# djangorestframework-stubs; zero errors, no baseline) and no model change without its
# migration. ATTEST_DEV=1: settings that need no secret key or running database.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	ATTEST_DEV=1 $(VENV)/bin/mypy
	ATTEST_DEV=1 $(PY) -W ignore::RuntimeWarning manage.py makemigrations --check --dry-run >/dev/null

clean:
	rm -rf $(VENV) .pytest_cache
