# hotline-link. The two commands a fresh machine needs are `make run` and `make test`;
# both install what is missing first (scripts/bootstrap.sh, idempotent).
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: deps run test bench chaos lab-up lab-down lab-status clean

deps:
	@bash scripts/bootstrap.sh

# The whole stack on this machine: the two-PBX lab, Redis and the service, until Ctrl-C.
run: deps
	$(BIN)/hotline-link run --lab

# The whole suite against the real lab (brought up and down by the tests themselves).
test: deps
	$(BIN)/pytest $(PYTEST_ARGS)

# The fault and bad-input suite, on its own lab (tests/chaos/lab.toml).
chaos: deps
	HOTLINE_TEST_LAB=tests/chaos/lab.toml $(BIN)/pytest -m chaos tests/chaos $(PYTEST_ARGS)

# Benchmarks on their own lab; results in bench/results/*.json and the README's table.
bench: deps
	$(BIN)/python -m bench

lab-up: deps
	$(BIN)/hotline-link lab up

lab-down:
	$(BIN)/hotline-link lab down

lab-status:
	$(BIN)/hotline-link lab status

clean: lab-down
	rm -rf var
