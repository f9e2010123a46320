# Attest: `make run` starts the whole product on embedded defaults, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install run test lint browser-deps clean

install: $(STAMP)

# Re-installs when pyproject.toml changes. pip (not uv/poetry) so the local torch CPU wheel
# folder (PIP_FIND_LINKS) is honoured where a machine has one.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[embedded,dev]"
	@touch $(STAMP)

run: install
	$(PY) -m assistant.launcher

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

test: install browser-deps
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache
