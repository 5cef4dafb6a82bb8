# OmniStream — the commands a newcomer types. `make run` and `make test` install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export PORT

.PHONY: install run test lint format migrate demo lock bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements.lock
	touch $@

migrate: install
	$(BIN)/python -m shared.preflight
	$(BIN)/python -m shared.migrate

run: migrate
	@echo "OmniStream API on http://127.0.0.1:$(PORT)  (docs: http://127.0.0.1:$(PORT)/api/docs)"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/honcho start -f Procfile

test: install
	$(BIN)/python -m shared.preflight
	$(BIN)/pytest $(PYTEST_ARGS)

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
