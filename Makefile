# The two commands of the README: `make demo` and `make test`. Both install
# what they need first (scripts/install-deps, idempotent; run as root).

VENV ?= /opt/kerbauth/venv
PYTEST_ARGS ?=
# The venv has the newest JupyterHub (6.x); these run again on 5.x through tox.
JH5_TESTS ?= tests/test_pam_hub.py tests/test_ldap_hub.py tests/test_fetch_hub.py \
	tests/test_spawn_hooks.py tests/test_password_tickets.py tests/test_config.py \
	tests/test_identity_hub.py

.PHONY: setup test lint format docs demo clean

setup:
	VENV=$(VENV) scripts/install-deps

test: setup
	$(VENV)/bin/ruff check kerbauth tests examples benchmarks docs
	$(VENV)/bin/ruff format --check kerbauth tests examples benchmarks docs
	$(VENV)/bin/sphinx-build -q -W -b html docs docs/_build/html
	$(VENV)/bin/pytest $(PYTEST_ARGS)
	$(VENV)/bin/tox -e jh5 -- $(JH5_TESTS)

lint:
	$(VENV)/bin/ruff check kerbauth tests examples benchmarks docs
	$(VENV)/bin/ruff format --check kerbauth tests examples benchmarks docs

format:
	$(VENV)/bin/ruff format kerbauth tests examples benchmarks docs
	$(VENV)/bin/ruff check --fix kerbauth tests examples benchmarks docs

docs:
	$(VENV)/bin/sphinx-build -b html docs docs/_build/html

demo: setup
	$(VENV)/bin/python demo/run.py $(DEMO_ARGS)

clean:
	rm -rf docs/_build build dist
