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

# The nightly regression gate (docs/nightly.md): `bench ab` between BASE and NEW (HEAD) on
# the gate profile, both sides at once; exit 1 on a regression. Then the night's cell
# medians join the history, its page is redrawn, and NEW becomes the last good commit
# when the gate passed. BASE=rev, else that last good commit, else HEAD~1.
NIGHTLY_ID := nightly-$(shell date -u +%Y%m%d-%H%M%S)
NEW ?= HEAD
BASE ?=
AB_OUT ?= results/ab
HISTORY ?= results/history/history.jsonl
LAST_GOOD = $(dir $(HISTORY))last-good
nightly: $(STAMP)
	@base="$(BASE)"; \
	[ -n "$$base" ] || base=$$(cat $(LAST_GOOD) 2>/dev/null); \
	[ -n "$$base" ] || base=HEAD~1; \
	echo "make nightly: $$base against $(NEW)"; \
	$(BIN)/python -m bench ab "$$base" "$(NEW)" --profile gate --together \
	  --out $(AB_OUT) --run-id $(NIGHTLY_ID) $(ARGS); \
	rc=$$?; [ $$rc -le 1 ] || exit $$rc; \
	$(BIN)/python -m bench history $(HISTORY) --append $(AB_OUT)/$(NIGHTLY_ID) \
	  --out $(dir $(HISTORY)) || exit $$?; \
	sha=$$(git rev-parse --verify -q "$(NEW)^{commit}" || git -C "$(NEW)" rev-parse HEAD); \
	[ $$rc -ne 0 ] || echo "$$sha" > $(LAST_GOOD); \
	exit $$rc

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
