# make run   - the whole product on this machine (SQLite, in-process queue, simulated meters)
# make test  - install what the tests need and run them (PostgreSQL/Redis if DATABASE_URL/REDIS_URL are set)
# make bench - the benchmarks under bench/
SHELL := /bin/sh
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench clean

$(STAMP): pyproject.toml requirements.lock
	@PYTHON_BIN=$$(./scripts/find-python) && echo "using $$PYTHON_BIN" && \
	  { [ -x $(PY) ] || $$PYTHON_BIN -m venv $(VENV); } && \
	  $(PY) -m pip install --quiet --upgrade pip && \
	  $(PY) -m pip install --quiet -r requirements.lock && \
	  $(PY) -m pip install --quiet --no-deps -e . && \
	  touch $(STAMP)

run: $(STAMP)
	@$(PY) manage.py migrate --noinput -v 0
	@echo "Demo logins:"
	@$(PY) manage.py demo_seed
	@$(PY) manage.py serve

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy .

# Benchmarks print their figures beside the baseline they are compared with.
# money.py also measures PostgreSQL when DATABASE_URL is set; devices.py needs
# DATABASE_URL and REDIS_URL; webhooks.py measures the single-process default.
# Every stage has a deadline, so this finishes; BENCH_ARGS=--quick runs each
# in under a minute.
bench: $(STAMP)
	$(PY) bench/money.py $(BENCH_ARGS)
	$(PY) bench/webhooks.py $(BENCH_ARGS)
	$(PY) bench/billing.py $(BENCH_ARGS)
	$(PY) bench/tenant.py $(BENCH_ARGS)
	@if [ -n "$$DATABASE_URL" ] && [ -n "$$REDIS_URL" ]; then $(PY) bench/devices.py $(BENCH_ARGS); \
	  else echo "bench/devices.py needs DATABASE_URL (PostgreSQL) and REDIS_URL: not run"; fi

clean:
	rm -rf $(VENV) var
