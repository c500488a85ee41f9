# Driftloop front door. `make demo` runs the closed loop once on the embedded stack; `make test` runs the tests.
# Both install everything they need into .venv on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv demo up down test test-fast test-topology test-containers bench bench-capacity mutation lint clean help

help:
	@echo "make demo           install, start MLflow + Airflow under .driftloop/, drive the loop once, print a summary"
	@echo "make up / make down start / stop MLflow + Airflow (state kept in .driftloop/)"
	@echo "make test           install and run every test (unit, data, DAG integrity, e2e, topology, containers)"
	@echo "make test-fast      all but the slow and topology tests (tests/serving starts uvicorn on 127.0.0.1)"
	@echo "make test-topology  the Postgres + Redis + Celery topology tests alone"
	@echo "make test-containers  docker-compose.yaml built and run in Docker (needs a running Docker engine)"
	@echo "make bench          benchmarks, one figure per line (bench-capacity: the data-capacity one alone)"
	@echo "make mutation       mutmut on the governance package and the data contract: killed share per group"
	@echo "make lint           ruff check, ruff format --check and mypy (strict on include/, plugins/ and dags/)"
	@echo "make clean          stop the stack and remove .driftloop/ (all local state)"

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install --quiet --no-deps -e .
	@touch $(STAMP)

# The demo loads the DAGs of its dataset only (DRIFTLOOP_DATASETS=<dataset>; the dataset is $DRIFTLOOP_DATASET,
# default telco_churn), so it stays fast however many configs include/configs/ holds. `make up` loads them all.
# On a stack that already runs, each keeps it, or restarts its Airflow side to serve what it needs (state kept),
# or says in one line what is in the way (driftloop_ops.front_door).
STATE_DIR = $${DRIFTLOOP_HOME:-.driftloop}
demo: venv
	@mkdir -p "$(STATE_DIR)"
	$(BIN)/driftloop demo --summary-json "$(STATE_DIR)/demo-summary.json"

up: venv
	$(BIN)/driftloop up

down: venv
	$(BIN)/driftloop down

# Every test, in three lanes side by side: the container stage (tests/containers: image builds and waits on a
# Docker stack; with it the slow tests marked `container_lane`, which fill those waits), the slow end-to-end tests (servers, schedulers and browsers, much of it waiting) and everything
# else, with the per-dataset loops (marker `datasets`) to balance the lanes' times. The first two write to their logs, printed when all lanes end; PYTEST_ARGS go to all three. The exit code
# is the first failing lane's (5, "no tests collected", included).
# The lanes' logs go to the state folder of this run ($DRIFTLOOP_HOME when set): a `make test` typed by a test of
# the front door, in its own temporary home, must not overwrite the logs of the `make test` running it.
TEST_LOG_DIR := $(or $(DRIFTLOOP_HOME),.driftloop)
CONTAINER_LOG := $(TEST_LOG_DIR)/test-containers.log
SLOW_LOG := $(TEST_LOG_DIR)/test-slow.log
test: venv
	@mkdir -p $(TEST_LOG_DIR)
	@$(BIN)/pytest -m "container or container_lane" $(PYTEST_ARGS) > $(CONTAINER_LOG) 2>&1 & clane=$$!; \
	$(BIN)/pytest -m "slow and not container and not container_lane and not datasets" $(PYTEST_ARGS) > $(SLOW_LOG) 2>&1 & slane=$$!; \
	$(BIN)/pytest -m "not container and not container_lane and (not slow or datasets)" $(PYTEST_ARGS); rc=$$?; \
	wait $$slane; src=$$?; wait $$clane; crc=$$?; \
	echo "================ slow lane (end to end, exit code $$src; log: $(SLOW_LOG)) ================"; \
	cat $(SLOW_LOG); \
	echo "================ container lane (tests/containers, exit code $$crc; log: $(CONTAINER_LOG)) ================"; \
	cat $(CONTAINER_LOG); \
	for code in $$rc $$src $$crc; do if [ $$code -ne 0 ]; then exit $$code; fi; done

test-fast: venv
	$(BIN)/pytest -m "not slow and not topology" $(PYTEST_ARGS)

test-topology: venv
	$(BIN)/pytest -m topology $(PYTEST_ARGS)

# Builds the images (deploy/offline/build-images.sh: no Docker Hub needed), runs the stack, `down -v` at the end.
test-containers: venv
	$(BIN)/pytest -m container $(PYTEST_ARGS)

# Figures only (one per line); each script's full output is kept in bench/results/<name>.log.
bench: venv
	@mkdir -p bench/results
	@for script in bench/bench_*.py; do \
		name=$$(basename $$script .py); \
		if $(BIN)/python $$script > bench/results/$$name.log 2>&1; then \
			grep -E "^(arrival|fanout|inference|loop|parse|validation|sensor|sensor_harm|explain|serving|capacity|startup|training|view|footprint|rollout|snapshot|monitoring)_" bench/results/$$name.log; \
		else \
			echo "$$name FAILED; last lines of bench/results/$$name.log:"; tail -20 bench/results/$$name.log; exit 1; \
		fi; \
	done

# The data-capacity figure alone (200k-row training snapshot, 250k and 1M-row scoring batches; about half an hour).
bench-capacity: venv
	@mkdir -p bench/results
	$(BIN)/python bench/bench_capacity.py 2>bench/results/bench_capacity.log

# Mutation testing (bench/mutation.py, docs/mutation.md): per group (governance, contract) mutants total, killed,
# survived, timeout, no tests and the killed share, one figure per line; survivors in .mutation/<group>/. By
# default a tenth of the mutants (those numbered ...5; about 6 minutes on 2 cores); MUTATION_ARGS= runs them all.
MUTATION_ARGS ?= --sample-digits 5
mutation: venv
	nice -n 19 $(BIN)/python bench/mutation.py $(MUTATION_ARGS)

lint: venv
	$(BIN)/ruff check include dags plugins tests bench
	$(BIN)/ruff format --check include dags plugins tests bench
	PYTHONPATH=include:plugins $(BIN)/mypy

# Stops a running stack first (its processes would outlive their state); needs no venv.
clean:
	@if [ -x $(BIN)/driftloop ]; then $(BIN)/driftloop down; fi
	rm -rf "$(STATE_DIR)"
