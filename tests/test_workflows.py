"""The GitHub workflows parse as YAML and have the structure the project relies on.

PyYAML follows YAML 1.1, where the bare key `on` is the boolean True: the trigger
mapping is read under either key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKFLOWS = Path(__file__).resolve().parents[1] / ".github" / "workflows"


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{name} is not a YAML mapping"
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    on = workflow.get("on", workflow.get(True))  # type: ignore[call-overload]  # YAML 1.1 reads `on:` as True
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict), "no `on:` triggers"
    return on


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return workflow["jobs"][job]["steps"]


def runs(workflow: dict[str, Any], job: str) -> str:
    return "\n".join(s.get("run", "") for s in steps(workflow, job))


def uses(workflow: dict[str, Any], job: str, action: str) -> dict[str, Any]:
    found = [s for s in steps(workflow, job) if s.get("uses", "").split("@")[0] == action]
    assert len(found) == 1, f"expected one {action} step in job {job}"
    return found[0]


@pytest.mark.parametrize("name", ["ci.yml", "nightly-bench.yml", "ab-pr.yml"])
def test_every_job_is_well_formed(name: str) -> None:
    workflow = load(name)
    assert workflow.get("name")
    assert workflow["jobs"], "no jobs"
    for job_id, job in workflow["jobs"].items():
        assert job.get("runs-on"), f"{job_id}: no runs-on"
        assert job.get("steps"), f"{job_id}: no steps"
        for step in job["steps"]:
            # A step runs an action or a shell command, never both, never neither.
            assert ("uses" in step) != ("run" in step), f"{job_id}: bad step {step}"
            if "uses" in step:
                action, _, version = step["uses"].partition("@")
                assert action and version, f"{job_id}: unpinned action {step['uses']}"
        ids = [s["id"] for s in job["steps"] if "id" in s]
        assert len(ids) == len(set(ids)), f"{job_id}: duplicate step ids"


@pytest.mark.parametrize("name", ["ci.yml", "nightly-bench.yml", "ab-pr.yml"])
def test_python_is_set_up_with_a_pip_cache(name: str) -> None:
    workflow = load(name)
    (job,) = workflow["jobs"]
    names = [s.get("uses", "").split("@")[0] for s in steps(workflow, job)]
    assert names.index("actions/checkout") < names.index("actions/setup-python")
    setup = uses(workflow, job, "actions/setup-python")["with"]
    assert str(setup["python-version"]).startswith("3.11")
    assert setup["cache"] == "pip"


def test_ci_runs_tox_on_push_and_pull_request() -> None:
    workflow = load("ci.yml")
    assert {"push", "pull_request"} <= set(triggers(workflow))
    (job,) = workflow["jobs"]
    commands = runs(workflow, job)
    assert "sudo apt-get install -y wrk netcat-openbsd" in commands
    assert "pip install tox" in commands
    assert "tox -e py311,lint" in commands
    assert commands.index("apt-get install") < commands.index("tox -e")


def test_nightly_triggers() -> None:
    on = triggers(load("nightly-bench.yml"))
    assert set(on) == {"schedule", "workflow_dispatch"}
    (entry,) = on["schedule"]
    fields = entry["cron"].split()
    assert len(fields) == 5 and fields[2:] == ["*", "*", "*"], "not a daily cron"
    # A manual run can name the base: the way to accept a change on purpose.
    assert on["workflow_dispatch"]["inputs"]["base"]["default"] == ""


def test_nightly_runs_bench_ab_from_the_last_good_night() -> None:
    workflow = load("nightly-bench.yml")
    (job,) = workflow["jobs"]
    checkout = uses(workflow, job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0  # the base's worktree needs its commit
    commands = runs(workflow, job)
    assert "gh run list --workflow nightly-bench.yml" in commands
    assert "--status success" in commands and "headSha" in commands
    assert "base=HEAD~1" in commands  # the first night
    assert 'make nightly BASE="$BASE" ANCHOR="$ANCHOR"' in commands
    order = [commands.index(s) for s in ("make install", "gh run list", "make nightly")]
    assert order == sorted(order)
    base = next(s for s in steps(workflow, job) if "gh run list" in s.get("run", ""))
    assert "GH_TOKEN" in base["env"]
    assert workflow["jobs"][job]["permissions"]["actions"] == "read"
    assert job_limit(workflow, job) <= 45


def test_nightly_keeps_the_history_on_its_branch() -> None:
    workflow = load("nightly-bench.yml")
    (job,) = workflow["jobs"]
    branch = workflow["env"]["HISTORY_BRANCH"]
    commands = runs(workflow, job)
    assert 'git fetch --quiet origin "$HISTORY_BRANCH"' in commands
    assert 'push --quiet origin "HEAD:refs/heads/$HISTORY_BRANCH"' in commands and branch
    for kept in ("history.jsonl", "anchor"):  # the series and what it is measured against
        assert 'git show "FETCH_HEAD:$file"' in commands and kept in commands
        assert f'git -C "$tree" add {kept}' in commands
    assert workflow["jobs"][job]["permissions"]["contents"] == "write"
    save = next(s for s in steps(workflow, job) if "push" in s.get("run", ""))
    bench = next(s for s in steps(workflow, job) if "make nightly" in s.get("run", ""))
    order = steps(workflow, job)
    assert order.index(bench) < order.index(save) and "always()" in save["if"]


def test_nightly_always_uploads_the_night_and_writes_the_summary() -> None:
    workflow = load("nightly-bench.yml")
    (job,) = workflow["jobs"]
    upload = uses(workflow, job, "actions/upload-artifact")
    assert "results/ab/nightly\n" in upload["with"]["path"]
    assert "results/ab/nightly-anchor" in upload["with"]["path"]
    assert "always()" in upload["if"]
    bench = next(s for s in steps(workflow, job) if "make nightly" in s.get("run", ""))
    assert "NIGHTLY_ID=nightly" in bench["run"]
    after = steps(workflow, job)[steps(workflow, job).index(bench) + 1 :]
    assert upload in after
    summary = [s for s in after if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert len(summary) == 1 and "always()" in summary[0]["if"]
    assert "results/ab/nightly/ab.md" in summary[0]["run"]
    # The job must fail on a regression: the bench step may not swallow make's status.
    assert not bench.get("continue-on-error")
    assert "|| true" not in bench["run"]


def test_pull_request_ab_is_opt_in_by_label_and_reports_to_the_summary() -> None:
    workflow = load("ab-pr.yml")
    assert "pull_request" in triggers(workflow)
    (job,) = workflow["jobs"]
    assert "'bench-ab'" in workflow["jobs"][job]["if"]
    checkout = uses(workflow, job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0
    assert "pull_request.head.sha" in checkout["with"]["ref"]
    commands = runs(workflow, job)
    assert "git merge-base" in commands
    assert '-m bench ab "$base" HEAD --profile gate --together' in commands
    bench = next(s for s in steps(workflow, job) if "bench ab" in s.get("run", ""))
    assert not bench.get("continue-on-error") and "|| true" not in bench["run"]
    summary = next(s for s in steps(workflow, job) if "GITHUB_STEP_SUMMARY" in s.get("run", ""))
    assert "always()" in summary["if"] and "results/ab/pr/ab.md" in summary["run"]
    assert job_limit(workflow, job) <= 45
    assert workflow["jobs"][job]["permissions"] == {"contents": "read"}


def test_both_gates_install_the_counters_and_count_first() -> None:
    """valgrind and strace in a step of their own; the counted gate before the wall-clock
    one, which still runs after a counted regression (the job fails on either)."""
    for name, job in (("nightly-bench.yml", "bench"), ("ab-pr.yml", "ab")):
        workflow = load(name)
        apt = [s for s in steps(workflow, job) if "apt-get" in s.get("run", "")]
        assert len(apt) == 1 and "install -y -qq valgrind strace" in apt[0]["run"], name
        later = [
            s.get("run", "") for s in steps(workflow, job)[steps(workflow, job).index(apt[0]) :]
        ]
        assert any("bench ab" in run or "make nightly" in run for run in later), name
    workflow = load("ab-pr.yml")
    commands = runs(workflow, "ab")
    assert commands.index("--counted") < commands.index("--profile gate --together")
    wall = next(s for s in steps(workflow, "ab") if "--together" in s.get("run", ""))
    assert wall["if"] == "${{ !cancelled() }}"
    upload = uses(workflow, "ab", "actions/upload-artifact")
    assert "results/ab/pr-counted" in upload["with"]["path"]
    nightly = load("nightly-bench.yml")
    upload = uses(nightly, "bench", "actions/upload-artifact")
    assert "results/ab/nightly-counted" in upload["with"]["path"]


def job_limit(workflow: dict[str, Any], job: str) -> int:
    return int(workflow["jobs"][job]["timeout-minutes"])


PINNED = re.compile(r"^\s*(?:- )?uses: ([\w.-]+/[\w.-]+)@([0-9a-f]{40})  # (v\d+\.\d+\.\d+)$")


@pytest.mark.parametrize("name", ["ci.yml", "nightly-bench.yml", "ab-pr.yml"])
def test_actions_are_pinned_to_a_commit_with_its_tag(name: str) -> None:
    """zizmor (make lint) wants the hash; the comment says which release it is."""
    lines = (WORKFLOWS / name).read_text(encoding="utf-8").splitlines()
    used = [line for line in lines if re.match(r"^\s*(- )?uses:", line)]
    assert used and all(PINNED.match(line) for line in used), used


def test_every_workflow_pins_an_action_to_the_same_commit() -> None:
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if found := PINNED.match(line):
                pins.setdefault(found[1], set()).add((found[2], found[3]))
    assert pins and all(len(pin) == 1 for pin in pins.values()), pins


@pytest.mark.parametrize("name", ["ci.yml", "nightly-bench.yml", "ab-pr.yml"])
def test_jobs_hold_only_the_permissions_and_credentials_they_use(name: str) -> None:
    """Nothing granted at the top; a checkout keeps its credentials only where the job
    pushes (the nightly history), and says so."""
    workflow = load(name)
    assert workflow["permissions"] == {}
    for job_id, job in workflow["jobs"].items():
        assert "permissions" in job, f"{job_id}: say what it needs"
        pushes = re.search(r"\bgit\b.* push ", runs(workflow, job_id)) is not None
        checkout = uses(workflow, job_id, "actions/checkout")
        assert checkout["with"]["persist-credentials"] is pushes, job_id
        assert (job["permissions"].get("contents") == "write") is pushes, job_id
