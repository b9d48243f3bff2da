# Pacer: `make run` starts it on this machine, `make test` runs every test, `make lint` every check.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PACKAGES := libs/common services/control services/scheduler services/executor services/gateway services/mcp services/cli
PYPROJECTS := $(addsuffix /pyproject.toml,$(PACKAGES))

.PHONY: help setup proto proto-check proto-baseline lint format test test-unit test-integration test-resilience run demo bench bench-history admin clean

help:
	@echo "make run          start Pacer on this machine (control plane on 127.0.0.1:50051, SQLite in var/)"
	@echo "make test         run the whole test suite (SQLite and PostgreSQL)"
	@echo "make test-resilience  faults one at a time under load, and what each costs (about 5 min; docs/operations.md)"
	@echo "make lint         ruff, mypy, import-linter, buf lint, buf breaking against the published API and the stub drift check"
	@echo "make demo         the flash-sale scenario, live and compressed (about 90 s; docs/demo.md)"
	@echo "make bench        claim-query, end-to-end and peer (APScheduler) benchmarks (about 9 min; docs/benchmarks.md)"
	@echo "make bench-history  run-history reads and pruning with 10,000,000 runs stored (about 10 min)"
	@echo "make proto        regenerate the Python stubs from protos/"
	@echo "make clean        remove the virtualenv and local state in var/"

setup: $(STAMP)

$(STAMP): $(PYPROJECTS) requirements-dev.txt constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -r requirements-dev.txt $(addprefix -e ,$(PACKAGES))
	touch $(STAMP)

proto: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

proto-check: $(STAMP)
	$(BIN)/python scripts/gen_protos.py --check

lint: $(STAMP) proto-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	cd protos && ../$(BIN)/buf lint
	cd protos && ../$(BIN)/buf breaking --against api-baseline.binpb

# The published API that `make lint` holds the protos to (buf breaking, FILE rules: no field, name, number or
# language option may change incompatibly). Additions need nothing; only a deliberate breaking change (a new major
# version) rebuilds it.
proto-baseline: $(STAMP)
	cd protos && ../$(BIN)/buf build -o api-baseline.binpb

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The deployment tests need helm and promtool: each script prints the tool's path, fetching it when it is missing.
test: $(STAMP)
	scripts/ensure-chromium.sh
	scripts/ensure-go.sh
	PACER_TEST_DATABASE_URL="$$(scripts/ensure-postgres.sh)" PACER_HELM="$$(scripts/ensure-helm.sh)" \
		PACER_PROMTOOL="$$(scripts/ensure-promtool.sh)" $(BIN)/python -m pytest $(PYTEST_ARGS)

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	PACER_TEST_DATABASE_URL="$$(scripts/ensure-postgres.sh)" $(BIN)/python -m pytest tests/integration $(PYTEST_ARGS)

test-resilience: $(STAMP)
	PACER_TEST_DATABASE_URL="$$(scripts/ensure-postgres.sh)" $(BIN)/python -m pytest tests/e2e/test_faults.py -s $(PYTEST_ARGS)

run: $(STAMP)
	$(BIN)/python scripts/run_local.py

demo: $(STAMP)
	$(BIN)/python -m examples.demo

# About 9 minutes: the claim query, the end-to-end bench at 1,000 runs/s on each backend, the sustained maximum, and
# the peer (APScheduler 3) at the same rates, ending with the comparison table. Results go to var/bench/.
BENCH_PG = PACER_TEST_DATABASE_URL="$$(scripts/ensure-postgres.sh)"
bench: $(STAMP)
	@test -n "$$(scripts/ensure-nginx.sh)" || { echo "the benchmarks need nginx"; exit 1; }
	$(BENCH_PG) $(BIN)/python -m bench.claim_query --backend postgresql
	$(BENCH_PG) $(BIN)/python -m bench.api --backend postgresql
	$(BIN)/python -m bench.claim_query --backend sqlite
	$(BENCH_PG) $(BIN)/python -m bench.pipeline --backend postgresql --duration-s 20 --out var/bench/pacer-postgresql
	$(BIN)/python -m bench.pipeline --backend sqlite --duration-s 20 --out var/bench/pacer-sqlite
	$(BENCH_PG) $(BIN)/python -m bench.pipeline --backend postgresql --find-max --duration-s 10 --warmup-s 3 \
		--through 1000 --out var/bench/pacer-max
	$(BENCH_PG) $(BIN)/python -m bench.peer --stores memory,postgresql --duration-s 10 --warmup-s 3 \
		--pacer var/bench/pacer-max/result.json --out var/bench/apscheduler

bench-history: $(STAMP)
	$(BENCH_PG) $(BIN)/python -m bench.history --backend postgresql

admin: $(STAMP)
	@echo "usage: $(BIN)/pacer-admin --help"

clean:
	rm -rf $(VENV) var
