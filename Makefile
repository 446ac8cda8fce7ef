# The two commands of the README: `make demo` and `make test`. Both install
# what they need first (scripts/install-deps, idempotent; run as root).
# The lint, docs and test commands live in tox.ini, once; this file calls them.

VENV ?= /opt/kerbauth/venv
TOX = $(VENV)/bin/tox
PYTEST_ARGS ?=
# The venv has the newest JupyterHub (6.x); these run again on 5.x through tox.
JH5_TESTS ?= tests/test_pam_hub.py tests/test_ldap_hub.py tests/test_fetch_hub.py \
	tests/test_spawn_hooks.py tests/test_password_tickets.py tests/test_config.py \
	tests/test_identity_hub.py

.PHONY: setup test lint format docs demo clean

setup:
	VENV=$(VENV) scripts/install-deps

# Lint and docs first (quick), the whole suite in the venv, the hub tests on
# JupyterHub 5.x, then the oldest versions pyproject.toml allows (tox.ini says
# which tests).
test: setup
	$(TOX) -e lint,docs
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	$(TOX) -e jh5 -- $(JH5_TESTS)
	$(TOX) -e lowest

lint:
	$(TOX) -e lint

format:
	$(TOX) -e format

docs:
	$(TOX) -e docs

demo: setup
	$(VENV)/bin/python demo/run.py $(DEMO_ARGS)

clean:
	rm -rf docs/_build build dist
