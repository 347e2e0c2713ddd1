# Two commands on a fresh machine: `make demo` (set up, start the local stack, migrate the lab
# data) and `make test` (set up everything the tests need, then run them all). Everything installs
# into .venv from the pinned requirements.lock.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
AIRFLOW_VENV := .venv-airflow
LAB_DATA ?= ../shared/data/lab-visits
FAST := not stack and not lab and not browser and not image and not gcloud and not airflow

.PHONY: setup setup-browser airflow airflow-lock demo test test-fast lint format bench up down \
  templates lock

setup: $(VENV)/.installed clickstream

$(VENV)/.installed: requirements.lock pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# The namespace as links to the folders (clickstream/gcp -> ../gcp), redone when setup.py's
# folders change: editors and type checkers resolve clickstream.<folder> from the root without the
# editable install's import hook (docs/architecture.md).
clickstream: setup.py $(VENV)/.installed
	$(BIN)/python -B -c 'import setup; setup.link_namespace()'
	touch $@

# Airflow in its own environment (its pins clash with Beam's tree), from orchestration/airflow.lock:
# the orchestration DAG's tests and the local Airflow run with it. Not needed by make setup.
airflow: $(AIRFLOW_VENV)/.installed

$(AIRFLOW_VENV)/.installed: orchestration/airflow.lock
	rm -rf $(AIRFLOW_VENV) && $(PYTHON) -m venv $(AIRFLOW_VENV)
	$(AIRFLOW_VENV)/bin/pip install --quiet --disable-pip-version-check -r orchestration/airflow.lock
	$(AIRFLOW_VENV)/bin/pip check
	touch $@

# Re-pin Airflow after changing orchestration/airflow-requirements.in.
airflow-lock:
	rm -rf .lock-airflow && $(PYTHON) -m venv .lock-airflow
	.lock-airflow/bin/pip install --quiet -r orchestration/airflow-requirements.in
	{ echo "# Fully pinned tree of orchestration/airflow-requirements.in (pip freeze of a fresh install; Python 3.11)."; \
	  echo "# Regenerate with: make airflow-lock"; \
	  .lock-airflow/bin/pip freeze; } > orchestration/airflow.lock
	rm -rf .lock-airflow

# Debian's Chromium, for the dashboard's browser tests (root, or sudo, for apt-get).
setup-browser:
	@command -v chromium >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

demo: setup up
	$(BIN)/clickstream migrate --input '$(LAB_DATA)/*.jsonl' --report migration-report.json

# Every test: the set-up they need first, then lint and all tiers.
test: setup setup-browser airflow lint
	$(BIN)/pytest

# No emulators, no browser, no lab data, no image build, no Airflow: under a minute.
test-fast: setup lint
	$(BIN)/pytest -m "$(FAST)"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Every benchmark target in one run (the stack started if needed); rewrites the README's table.
bench: setup up
	$(BIN)/python benchmarks/run.py --readme

# Build every flex template on Google Cloud: make templates PROJECT=p REGION=r BUCKET=b [DRY_RUN=1]
templates: setup
	$(BIN)/clickstream template build --all --project $(PROJECT) --region $(REGION) \
	  --bucket $(BUCKET) $(if $(DRY_RUN),--dry-run)

up: setup
	$(BIN)/clickstream local up

down: setup
	$(BIN)/clickstream local down

# Re-pin after changing pyproject's dependencies: the flex-template image's runtime tree
# (templates/requirements.txt), then the whole tree with the extras (requirements.lock).
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet .
	{ echo "# The flex-template image's Python dependencies: the runtime tree of pyproject.toml, fully pinned"; \
	  echo "# (no emulators, no dev tools). Regenerate with: make lock"; \
	  .lock-venv/bin/pip freeze | grep -v '^clickstream-catalog'; } > templates/requirements.txt
	.lock-venv/bin/pip install --quiet '.[local,dev,dashboard,subscribers,ops]'
	{ echo "# Fully pinned dependency tree (pip freeze of a fresh install of pyproject's dependencies with the"; \
	  echo "# local, dev, dashboard, subscribers and ops extras). Regenerate with: make lock"; \
	  .lock-venv/bin/pip freeze | grep -v '^clickstream-catalog'; } > requirements.lock
	rm -rf .lock-venv
