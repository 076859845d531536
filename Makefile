# The two commands a new user needs: `make bench` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint format clean bench report nightly

# Options for `make bench`, e.g. make bench PROFILE=full ARGS="--models epoll threaded"
PROFILE ?= quick
ARGS ?=

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The tests that start no server and send no traffic: parsers, statistics, report, store.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not real and not browser"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m bench run --profile $(PROFILE) $(ARGS)

# Re-render a run's report: make report RUN=results/<run-id>
report: $(STAMP)
	@test -n "$(RUN)" || { echo "usage: make report RUN=results/<run-id>" >&2; exit 2; }
	$(BIN)/python -m bench report $(RUN)

# The nightly regression gate: run the nightly profile, compare with a baseline run.
# BASELINE=path, else the newest run under results/baseline/, else results/reference/nightly/.
# With no baseline at all (the first night) the run becomes the first baseline: no compare.
# COMPARE_FLAGS=--force compares runs made on different machines (hosted CI runners).
NIGHTLY_ID := nightly-$(shell date -u +%Y%m%d-%H%M%S)
COMPARE_FLAGS ?=
nightly: $(STAMP)
	@base="$(BASELINE)"; \
	[ -n "$$base" ] || base=$$(ls -d results/baseline/*/ 2>/dev/null | tail -n 1); \
	[ -n "$$base" ] || base=$$(ls -d results/reference/nightly/*/ 2>/dev/null | tail -n 1); \
	$(BIN)/python -m bench run --profile nightly --run-id $(NIGHTLY_ID) $(ARGS) || exit $$?; \
	if [ -z "$$base" ]; then \
	  echo "make nightly: no baseline yet; results/$(NIGHTLY_ID) can be the first" \
	    | tee results/$(NIGHTLY_ID)/summary.md; exit 0; fi; \
	$(BIN)/python -m bench compare "$$base" results/$(NIGHTLY_ID) $(COMPARE_FLAGS) \
	  --out results/$(NIGHTLY_ID)/summary.md

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .ruff_cache .mypy_cache *.egg-info

# prefork (and epoll as the control) on 1, 2, 4 and 8 server CPUs: needs 9 CPUs or more.
# On a 16-core machine: make scaling ARGS="--run-id scaling-16core"
.PHONY: scaling
scaling: $(STAMP)
	$(BIN)/python -m bench.scaling $(ARGS)

# The native load generator against wrk on the epoll server (needs wrk and 2 CPUs).
.PHONY: crosscheck
crosscheck: $(STAMP)
	$(BIN)/python -m bench.crosscheck $(ARGS)
