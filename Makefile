# The two commands a new user needs: `make bench` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-fast lint format clean bench report nightly

# Options for `make bench`, e.g. make bench PROFILE=full ARGS="--models epoll threaded";
# no PROFILE: bench run's default (quick), and make bench ARGS="--resume results/<id>" works
PROFILE ?=
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

# zizmor: the GitHub workflows' security audit (pinned actions, no stray credentials)
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/zizmor --offline .github/workflows

format: $(STAMP)
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python -m bench run $(if $(PROFILE),--profile $(PROFILE)) $(ARGS)

# Re-render a run's report: make report RUN=<run-id or folder> [ARGS="--models epoll"];
# RUN="run-a run-b": side by side
report: $(STAMP)
	@test -n "$(RUN)" || { echo "usage: make report RUN=<run-id or results/<run-id>>" >&2; exit 2; }
	$(BIN)/python -m bench report $(RUN) $(ARGS)

# The nightly regression gates (docs/nightly.md): first the counted one, `bench ab
# --counted` between BASE and NEW (HEAD): instructions and system calls per request under
# valgrind and strace; then the wall-clock one, `bench ab` on the gate profile, both sides
# at once. Each exits 1 on a regression, and the night fails if either does. Then NEW
# against a fixed ANCHOR (the same run when the anchor is the base) and NEW's counts go
# into the history, whose page is redrawn; NEW becomes the last good commit when both
# gates passed. BASE=rev, else the last good commit, else HEAD~1; ANCHOR=rev (moves it: a
# new series), else the history's anchor, else (the first night) the base, which then
# stays the anchor. ARGS: more options for the wall-clock gate, COUNTED_ARGS for the
# counted one (e.g. COUNTED_ARGS="--models epoll --requests 100 1100").
NIGHTLY_ID := nightly-$(shell date -u +%Y%m%d-%H%M%S)
NEW ?= HEAD
BASE ?=
ANCHOR ?=
AB_OUT ?= results/ab
HISTORY ?= results/history/history.jsonl
LAST_GOOD = $(dir $(HISTORY))last-good
ANCHOR_FILE = $(dir $(HISTORY))anchor
COUNTED_ARGS ?=
AB = $(BIN)/python -m bench ab --profile gate --together --out $(AB_OUT)
AB_COUNTED = $(BIN)/python -m bench ab --counted --out $(AB_OUT)
nightly: $(STAMP)
	@sha() { git rev-parse --verify -q "$$1^{commit}" || git -C "$$1" rev-parse HEAD; } 2>/dev/null; \
	base="$(BASE)"; \
	[ -n "$$base" ] || base=$$(cat $(LAST_GOOD) 2>/dev/null); \
	[ -n "$$base" ] || { base=HEAD~1; echo "make nightly: the first night: no BASE and no" \
	  "$(LAST_GOOD), so the base is HEAD~1; a passing night writes its commit there" \
	  "(docs/nightly.md)"; }; \
	anchor="$(ANCHOR)"; \
	[ -n "$$anchor" ] || anchor=$$(cat $(ANCHOR_FILE) 2>/dev/null); \
	[ -n "$$anchor" ] || anchor=$$base; \
	base_sha=$$(sha "$$base") && anchor_sha=$$(sha "$$anchor") \
	  || { echo "make nightly: no such revision or checkout: $$base or $$anchor" >&2; exit 2; }; \
	echo "make nightly: $$base_sha against $(NEW); the history's anchor: $$anchor_sha"; \
	$(AB_COUNTED) "$$base" "$(NEW)" --run-id $(NIGHTLY_ID)-counted $(COUNTED_ARGS); \
	counted=$$?; [ $$counted -le 1 ] || exit $$counted; \
	$(AB) "$$base" "$(NEW)" --run-id $(NIGHTLY_ID) $(ARGS); \
	rc=$$?; [ $$rc -le 1 ] || exit $$rc; \
	[ $$counted -eq 0 ] || rc=1; \
	trend=$(AB_OUT)/$(NIGHTLY_ID); \
	if [ "$$anchor_sha" != "$$base_sha" ]; then \
	  trend=$(AB_OUT)/$(NIGHTLY_ID)-anchor; \
	  $(AB) "$$anchor" "$(NEW)" --run-id $(NIGHTLY_ID)-anchor $(ARGS); \
	  [ $$? -le 1 ] || exit 2; \
	fi; \
	$(BIN)/python -m bench history $(HISTORY) --append $$trend $(AB_OUT)/$(NIGHTLY_ID)-counted \
	  --out $(dir $(HISTORY)) \
	  || exit $$?; \
	echo "$$anchor_sha" > $(ANCHOR_FILE); \
	[ $$rc -ne 0 ] || sha "$(NEW)" > $(LAST_GOOD); \
	exit $$rc

clean:
	rm -rf $(VENV) .venv-* .pytest_cache .ruff_cache .mypy_cache *.egg-info

# prefork (and epoll as the control) on 1, 2, 4 and 8 server CPUs: needs 9 CPUs or more.
# On a 16-core machine: make scaling ARGS="--run-id scaling-16core"
.PHONY: scaling
scaling: $(STAMP)
	$(BIN)/python -m bench.studies.scaling $(ARGS)

# The native load generator against wrk on the epoll server (needs wrk and 2 CPUs).
.PHONY: crosscheck
crosscheck: $(STAMP)
	$(BIN)/python -m bench.studies.crosscheck $(ARGS)
