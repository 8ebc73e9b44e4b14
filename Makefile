# Two commands for a new user: `make run` and `make test`. Both create .venv on first use.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SPEC ?= data/movies/movies.yaml
OUT ?= runs
RUN_ARGS ?=
PYTEST_ARGS ?=

# One Keras everywhere: TFT's transform layer is a tf_keras model.
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: run test test-fast test-airflow bench lint format setup data clean browser postgres

run: $(STAMP)
	$(VENV)/bin/mimo run --spec $(SPEC) --output $(OUT) $(RUN_ARGS)

# On every core (pytest-xdist); tests sharing a session fixture share a worker (tests/conftest.py).
TEST_WORKERS ?= auto
test: lint browser postgres
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder $(PYTEST_ARGS)

# The run report's browser test needs headless Chromium (Debian's package); installed when
# missing. If it cannot be, the test says so loudly and is skipped.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Debian's chromium for the report's browser test"; \
	  $(SUDO) apt-get install -y --no-install-recommends chromium >/dev/null \
	  || { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y --no-install-recommends chromium >/dev/null; } \
	  || echo "WARNING: could not install chromium: the report's browser test will be SKIPPED"; }

# Airflow's scheduler test keeps its metadata in PostgreSQL (Debian's package; the test starts its
# own server on loopback): installed when missing, else that test is skipped loudly.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  echo "Installing Debian's postgresql for Airflow's scheduler test"; \
	  $(SUDO) apt-get install -y --no-install-recommends postgresql >/dev/null \
	  || { $(SUDO) apt-get update >/dev/null && $(SUDO) apt-get install -y --no-install-recommends postgresql >/dev/null; } \
	  || echo "WARNING: could not install postgresql: Airflow's scheduler test will be SKIPPED"; }

# Everything but the whole-pipeline runs (e2e): the unit and component tests, in a few minutes.
test-fast: lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder -m "not e2e and not airflow_run" $(PYTEST_ARGS)

# Every Airflow test: the DAG file, the real scheduler's run (also in `make test`) and a
# dag.test() run with no database server.
test-airflow: $(STAMP) postgres
	$(PY) -m pytest -m "" tests/pipeline/runners/test_airflow.py \
	  tests/pipeline/runners/test_airflow_scheduler.py $(PYTEST_ARGS)

# Benchmarks (bench/run.py): JSON, a markdown summary and plots under bench/results/.
# BENCH_SCALES=0.02,0.1,1,10,100 adds the 100x data (hours); BENCH_ARGS='--skip penguin,beam' etc.
BENCH_SCALES ?= 0.02,0.1,1,10
BENCH_ARGS ?=
bench: $(STAMP)
	$(PY) -m bench.run --scales $(BENCH_SCALES) $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

setup: $(STAMP)

# Python 3.10 is required (TFX 1.16 has no wheels for newer Pythons on glibc 2.36).
# Look on PATH first, then under pyenv; stop with a clear message if there is none.
$(STAMP): setup.py pyproject.toml constraints.txt
	@set -e; \
	py=""; \
	for c in python3.10 python3 python; do \
	  p=$$(command -v $$c 2>/dev/null || true); \
	  if [ -n "$$p" ] && "$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; then py=$$p; break; fi; \
	done; \
	if [ -z "$$py" ] && command -v pyenv >/dev/null 2>&1; then \
	  for v in $$(pyenv versions --bare 2>/dev/null | grep -E '^3\.10(\.[0-9]+)?$$' | sort -t. -k3 -n -r); do \
	    p="$$(pyenv prefix $$v)/bin/python"; \
	    if [ -x "$$p" ]; then py=$$p; break; fi; \
	  done; \
	fi; \
	if [ -z "$$py" ]; then \
	  echo "error: Python 3.10 is required (TFX 1.16 supports no newer Python here) and none was found." >&2; \
	  echo "       Looked for python3.10/python3/python on PATH and for a 3.10.x under pyenv." >&2; \
	  echo "       Install one (e.g. 'pyenv install 3.10.13') and run make again." >&2; \
	  exit 1; \
	fi; \
	echo "Using $$py ($$($$py --version))"; \
	rm -rf $(VENV); \
	"$$py" -m venv $(VENV); \
	$(PY) -m pip install --quiet --upgrade "pip<25" setuptools wheel; \
	$(PY) -m pip install --quiet -c constraints.txt --config-settings editable_mode=compat -e '.[dev,registry,kubeflow,airflow]'; \
	touch $(STAMP)

clean:
	rm -rf runs .pytest_cache
