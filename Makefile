# hotline-link. The two commands a fresh machine needs are `make run` and `make test`;
# both install what is missing first (scripts/bootstrap.sh, idempotent).
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: deps run run-standby test chaos-quick bench chaos lab-up lab-down lab-status clean

deps:
	@bash scripts/bootstrap.sh

# The whole stack on this machine: the two-PBX lab, Redis and the service, until Ctrl-C.
run: deps
	$(BIN)/hotline-link run --lab

# The same with two service instances in hot standby and Redis as a primary, a replica and three
# sentinels (README, "Hot standby"; config/lab-standby.toml). One of run/run-standby at a time.
run-standby: deps
	$(BIN)/hotline-link -c config/lab-standby.toml run --lab

# The layering rules (pyproject.toml [tool.importlinter]), the whole suite against the real lab
# (brought up and down by the tests themselves), the chained transfer on the three-centre lab
# (tests/province/lab.toml), then the fault suite once at a small scale.
test: deps
	$(BIN)/lint-imports --no-cache
	$(BIN)/pytest $(PYTEST_ARGS)
	HOTLINE_TEST_LAB=tests/province/lab.toml $(BIN)/pytest -m province tests/province $(PYTEST_ARGS)
	$(MAKE) --no-print-directory chaos-quick

# Every fault and bad-input case once, at a scale that fits CI (about 3 minutes): one round per
# kill -9 state, 40 DTMF-fuzz calls, a 10 s Redis outage over 20 transfers, a 1,000-record burst,
# the service down 6 s, the sidecar down over 3 transfers, a 300-record burst across Redis kill -9;
# then on the Sentinel lab the primary killed -9 during a 300-record burst and 3 transfers, and
# the active service instance and the Redis primary killed at once in each state of a transfer.
chaos-quick: deps
	HOTLINE_TEST_LAB=tests/chaos/lab.toml CHAOS_ROUNDS=1 CHAOS_DTMF_RUNS=40 \
	  CHAOS_REDIS_TRANSFERS=20 CHAOS_REDIS_OUTAGE_S=10 CHAOS_SIDECAR_BURST=1000 \
	  CHAOS_SERVICE_DOWN_S=6 CHAOS_SIDECAR_TRANSFERS=3 CHAOS_REDIS_BURST=300 \
	  $(BIN)/pytest -m chaos tests/chaos $(PYTEST_ARGS)
	HOTLINE_TEST_LAB=tests/chaos/lab-sentinel.toml CHAOS_FAILOVER_BURST=300 \
	  CHAOS_FAILOVER_TRANSFERS=3 $(BIN)/pytest -m chaos tests/chaos/test_sentinel.py $(PYTEST_ARGS)

# The fault and bad-input suite, on its own lab (tests/chaos/lab.toml); the Redis failover cases
# (1,000 records and 100 transfers around the kill; both at once) on the Sentinel lab (tests/chaos/lab-sentinel.toml; on the other lab they are skipped).
chaos: deps
	HOTLINE_TEST_LAB=tests/chaos/lab.toml $(BIN)/pytest -m chaos tests/chaos $(PYTEST_ARGS)
	HOTLINE_TEST_LAB=tests/chaos/lab-sentinel.toml $(BIN)/pytest -m chaos \
	  tests/chaos/test_sentinel.py $(PYTEST_ARGS)

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
