# The two commands of the README: `make demo` and `make test`. Both install
# what they need first (scripts/install-deps, idempotent; run as root).
# The lint, docs and test commands live in tox.ini, once; this file calls them.

VENV ?= /opt/kerbauth/venv
TOX = $(VENV)/bin/tox
PYTEST_ARGS ?=
# The venv has the newest JupyterHub (6.x); these run again on 5.x through tox.
JH5_TESTS ?= tests/test_pam_hub.py tests/test_ldap_hub.py tests/test_fetch_hub.py \
	tests/test_spawn_hooks.py tests/test_password_tickets.py tests/test_config.py \
	tests/test_identity_hub.py tests/test_jh6_surfaces.py tests/test_ldap_refresh.py
# The consumer tests (issue 13: JVMs, pyspark, Apache, PostgreSQL, a 3-minute
# window of 1-minute tickets) run in the side stream, after lowest, in the venv
# (pyspark is only there): most of their time is waiting on a JVM or a clock.
# The kernelspec's and the doctor's Hadoop tests (a JVM or two each) go with them:
# the side stream is the shorter one. They run niced: their JVMs take what CPU the
# suite leaves, so the suite's timing checks (PAM delays, floods) keep their CPU.
CONSUMER_TESTS ?= $(sort $(wildcard tests/test_consumers*.py tests/test_spark_*.py)) \
	tests/test_kernelspec.py tests/test_doctor_hadoop.py
# The deployment tests (issue 14: nginx in front, the systemd unit's settings, the
# hub on MariaDB and PostgreSQL; and the Samba AD DC the LDAP mode meets at a site)
# go in the side stream too, before the consumer tests and not niced: they restart
# hubs against tickets of a minute or less. (The browser test stays in the suite:
# it runs the demo, whose fixed accounts test_demo's demos use too.)
DEPLOYMENT_TESTS ?= tests/test_nginx.py tests/test_systemd.py tests/test_hub_db.py \
	tests/test_ldap_ad.py
SIDE_TESTS = $(DEPLOYMENT_TESTS) $(CONSUMER_TESTS)
# The renewal tests against the clock (tickets of a minute over three lifetimes, a
# KDC down for a minute, a hub restart): eight minutes, nearly all of it waiting for
# tickets to age. They run as a third stream beside the two others, from the start.
CLOCK_TESTS ?= tests/test_renewal_hub.py
# The slowest tests of each run are listed at its end: what to look at first
# when the run grows.
DURATIONS = --durations=12

.PHONY: setup test lint format docs demo clean

setup:
	VENV=$(VENV) scripts/install-deps

# Lint and docs first (quick); then three streams at once. The suite, in the venv,
# without the deployment, consumer and clock tests. Beside it, the side stream:
# the hub tests on JupyterHub 5.x, the oldest versions pyproject.toml allows
# (tox.ini says which tests), then the deployment tests and the consumer tests
# (each of the four runs, whatever the others did). And the clock stream: the
# renewal tests against the clock. Most of a hub test is waiting for a process,
# and the fixtures are made for parallel runs (random ports and names, a lock
# around the shared groups). The other streams' output is printed after the
# suite's, whole.
test: setup
	$(TOX) -e lint,docs
	@log=$$(mktemp /tmp/make-test-side-XXXXXX); \
	( rc=0; $(TOX) -e jh5 -- $(DURATIONS) $(JH5_TESTS) || rc=1; $(TOX) -e lowest || rc=1; \
	  $(VENV)/bin/pytest $(DURATIONS) $(DEPLOYMENT_TESTS) || rc=1; \
	  nice -n 10 $(VENV)/bin/pytest $(DURATIONS) $(CONSUMER_TESTS) || rc=1; exit $$rc ) >$$log 2>&1 & side=$$!; \
	clocklog=$$(mktemp /tmp/make-test-clock-XXXXXX); \
	$(VENV)/bin/pytest $(DURATIONS) $(CLOCK_TESTS) >$$clocklog 2>&1 & clock=$$!; \
	trap 'kill $$side $$clock 2>/dev/null; rm -f $$log $$clocklog' INT TERM; \
	$(VENV)/bin/pytest $(DURATIONS) $(PYTEST_ARGS) $(addprefix --ignore=,$(SIDE_TESTS) $(CLOCK_TESTS)); suite=$$?; \
	wait $$clock; clockrc=$$?; \
	echo "--- the renewal tests against the clock (run beside the suite) ---"; \
	cat $$clocklog; rm -f $$clocklog; \
	wait $$side; tox=$$?; \
	echo "--- tox -e jh5, tox -e lowest, the deployment tests, then the consumer tests (run beside the suite) ---"; \
	cat $$log; rm -f $$log; \
	echo "suite: exit $$suite; the clock tests: exit $$clockrc; jh5, lowest, the deployment and the consumer tests: exit $$tox"; \
	test $$suite -eq 0 && test $$clockrc -eq 0 && test $$tox -eq 0

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
