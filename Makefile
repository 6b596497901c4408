# The two commands: `make run` brings the whole stack up from nothing, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: run test install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing dependencies into $(VENV) (first time takes a minute)..."
	@$(PY) -m pip install --disable-pip-version-check --upgrade pip > $(VENV)/pip.log 2>&1 \
	  && $(PY) -m pip install --disable-pip-version-check -e '.[test]' >> $(VENV)/pip.log 2>&1 \
	  || (tail -30 $(VENV)/pip.log; echo "dependency install failed (full log: $(VENV)/pip.log)"; exit 1)
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/run.sh

test: install
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m pytest $(PYTEST_ARGS)

clean:  # stops the private Redis that `make run` left running, and forgets all local state
	@test -f var/redis/redis.pid && kill $$(cat var/redis/redis.pid) 2>/dev/null || true
	rm -rf var .env
