# Two commands do everything on a machine that has only python3: `make demo` and `make test`.
# Each bootstraps .venv with uv (pip-installed into the venv when missing) from uv.lock.

PYTHON ?= python3
VENV := .venv
UV := $(VENV)/bin/uv
RUN := $(VENV)/bin/
SYNC_STAMP := $(VENV)/.synced
EXTRAS := --extra s3 --extra parquet --extra delta --extra iceberg --extra redis

.PHONY: help venv demo test test-fast lint format bench airflow clean system-packages dist \
	test-install test-floor

help:
	@echo "make demo    - run the main job against the bundled Lucca sandbox (local files;"
	@echo "               FORMAT=delta or FORMAT=iceberg: a local table, and its history)"
	@echo "make test    - lint + the whole test suite"
	@echo "make test-fast - unit and contract tests only (no slow, e2e or browser test), no lint"
	@echo "make airflow - a local Airflow (UI, scheduler) wired to the sandbox"
	@echo "make bench   - the performance benchmark"
	@echo "make dist    - build the wheel and sdist into dist/ and check them (twine check --strict)"
	@echo "make test-install - the wheel into a fresh venv with a stock Airflow 3.3.2, with plain pip"
	@echo "make test-floor - unit and contract tests and a DAG run on Airflow 3.2.2 (.venv-floor)"

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set, Python caches no bytecode, and every
# pytest run would compile Airflow and the test plugins again (about 10 s).
$(SYNC_STAMP): uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --compile-bytecode $(EXTRAS) --quiet
	@touch $@

venv: $(SYNC_STAMP)

lint: venv
	$(RUN)ruff check .
	$(RUN)ruff format --check .
	$(RUN)mypy airflow_provider_lucca sandbox/lucca_sandbox

format: venv
	$(RUN)ruff check --fix .
	$(RUN)ruff format .

system-packages:
	bash scripts/system_packages.sh

# The distributed-engine tests (tests/distributed: a Celery deployment whose time is mostly the
# tenants' paced requests) run beside the rest of the suite, their output shown at the end.
DISTRIBUTED_LOG := .pytest-distributed.log
# The rest runs on two pytest-xdist workers: much of it waits (paced requests, servers starting,
# processes killed and restarted), so two workers keep the two cores busy. A test file goes to
# whichever worker is free, whole (its module fixtures start once).
XDIST := -n 2 --dist loadfile

test: system-packages lint
	@$(RUN)pytest -p no:cacheprovider tests/distributed $(PYTEST_ARGS) > $(DISTRIBUTED_LOG) 2>&1 & \
	distributed=$$!; \
	$(RUN)pytest --ignore=tests/distributed $(XDIST) $(PYTEST_ARGS); main=$$?; \
	wait $$distributed; other=$$?; \
	echo "----- tests/distributed (run beside the suite) -----"; tail -n 40 $(DISTRIBUTED_LOG); \
	test $$main -eq 0 && { test $$other -eq 0 || test $$other -eq 5; }

# The markers are registered in pyproject.toml ([tool.pytest.ini_options]).
test-fast: venv
	$(RUN)pytest -m "not slow and not e2e and not browser" $(XDIST) $(PYTEST_ARGS)

# The wheel and sdist a user installs (uv build; the wheel holds only airflow_provider_lucca/),
# checked as PyPI would (twine check --strict: metadata, README rendering).
dist: venv
	rm -rf dist
	$(UV) build --out-dir dist
	$(RUN)twine check --strict dist/*.whl dist/*.tar.gz

# Not in `make test` (which takes about 18 minutes): each needs the network and minutes. CI
# (.ci/run) runs both after it; README "Supported versions".
test-install: venv
	$(RUN)python scripts/check_install.py

test-floor: venv
	$(RUN)python scripts/floor_env.py

demo: venv
	$(RUN)python scripts/demo.py $(if $(FORMAT),--format $(FORMAT))

bench: system-packages venv
	$(RUN)python bench/run.py

airflow: venv
	$(RUN)python scripts/airflow_stack.py

clean:
	rm -rf $(VENV) .venv-floor dist .pytest_cache .mypy_cache .ruff_cache data/demo $(DISTRIBUTED_LOG)
