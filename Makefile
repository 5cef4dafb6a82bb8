# OmniStream — the commands a newcomer types. `make run` and `make test` install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT
PINNED = $(shell grep -c '^[a-z0-9]' requirements.lock)

.PHONY: install run test lint format migrate demo lock bench clean

install: $(VENV)/.installed

# The first install takes about a minute: say so, then print one line per package as pip
# reaches it, instead of a minute of silence (pip's errors still go to stderr whole).
$(VENV)/.installed: requirements.lock
	@echo "Installing $(PINNED) pinned packages into $(VENV) (the first time takes about a minute)"
	$(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(BIN)/pip install --disable-pip-version-check --progress-bar off \
		--require-hashes -r requirements.lock \
		| awk -v total=$(PINNED) '/^(Collecting|Processing) /{ sub(/.*\//, "", $$2); \
			printf "  [%d/%d] %s\n", ++n, total, $$2; fflush() } \
			/^Installing collected/{ print "  installing..."; fflush() }'
	@touch $@
	@echo "Installed into $(VENV)"

migrate: install
	$(BIN)/python -m shared.preflight
	$(BIN)/python -m shared.migrate

run: migrate
	@echo "OmniStream API on http://127.0.0.1:$(PORT)  (docs: http://127.0.0.1:$(PORT)/api/docs)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

# One test process per core (pytest-xdist), each with its own database and Redis namespace.
# PYTEST_ARGS replaces the default, e.g. make test PYTEST_ARGS="tests/webhooks -x".
# Then the tests marked "broker" (actors through a real worker, retries, dead letters,
# outbox -> webhooks, delayed messages) run again on RabbitMQ, each process in a vhost of
# its own; RABBITMQ_TEST_URL= (empty), or a PYTEST_ARGS of your own, skips that pass. PERF: only the directories that
# hold marked tests are collected (the whole suite's collection is ~12 s of CPU).
# PERF: the host-kill test (tests/scale_out: a whole cluster for a minute) runs once, in the
# RabbitMQ pass, where a dead host's messages come back at once; bench/scale_out.py measures
# Redis's recovery.
DEFAULT_PYTEST_ARGS = -n auto --ignore=tests/scale_out
PYTEST_ARGS ?= $(DEFAULT_PYTEST_ARGS)
RABBITMQ_TEST_URL ?= amqp://guest:guest@127.0.0.1:5672/
BROKER_TEST_DIRS = tests/workers tests/webhooks tests/automation tests/api tests/scheduler \
	tests/scale_out
RABBITMQ_PYTEST_ARGS ?= -n auto -m broker $(BROKER_TEST_DIRS)
# A developer without RabbitMQ gets the first pass only; CI sets RABBITMQ_REQUIRED=1.
export RABBITMQ_UP = import sys, pika; pika.BlockingConnection(pika.URLParameters(sys.argv[1])).close()
test: install
	$(BIN)/python -m shared.preflight
	$(BIN)/pytest $(PYTEST_ARGS)
	@if [ -z "$(RABBITMQ_TEST_URL)" ] || [ "$(PYTEST_ARGS)" != "$(DEFAULT_PYTEST_ARGS)" ]; then exit 0; fi; \
	if ! $(BIN)/python -c "$$RABBITMQ_UP" "$(RABBITMQ_TEST_URL)" 2>/dev/null; then \
		if [ -n "$$RABBITMQ_REQUIRED" ]; then echo "RabbitMQ is not reachable at $(RABBITMQ_TEST_URL)"; exit 1; fi; \
		echo "RabbitMQ is not reachable at $(RABBITMQ_TEST_URL): the RabbitMQ pass is skipped"; exit 0; \
	fi; \
	echo "The broker tests again, on RabbitMQ ($(RABBITMQ_TEST_URL))"; \
	BROKER_URL="$(RABBITMQ_TEST_URL)" $(BIN)/pytest $(RABBITMQ_PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# A demo tenant with realistic volume (re-running refreshes it); prints the admin's login.
# Pass flags with DEMO_ARGS, e.g. make demo DEMO_ARGS="--conversations 100000 --messages 1000000".
demo: migrate
	$(BIN)/python -m shared.demo $(DEMO_ARGS)

# Re-pin every dependency after editing pyproject.toml (needs network access to PyPI).
lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev --generate-hashes \
		--python-version 3.11 -o requirements.lock

# The benchmarks create (and drop) databases of their own: no need to migrate the dev database.
bench: install
	$(BIN)/python -m shared.preflight
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache
