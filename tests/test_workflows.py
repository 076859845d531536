"""The GitHub workflows parse as YAML and have the structure the project relies on.

PyYAML follows YAML 1.1, where the bare key `on` is the boolean True: the trigger
mapping is read under either key.
"""

from __future__ import annotations

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


@pytest.mark.parametrize("name", ["ci.yml", "nightly-bench.yml"])
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


@pytest.mark.parametrize("name", ["ci.yml", "nightly-bench.yml"])
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
    # A manual run can pick the committed reference: the way to accept a change.
    choice = on["workflow_dispatch"]["inputs"]["baseline"]
    assert choice["default"] in choice["options"] and "reference" in choice["options"]


def test_nightly_fetches_a_baseline_then_runs_make_nightly() -> None:
    workflow = load("nightly-bench.yml")
    (job,) = workflow["jobs"]
    commands = runs(workflow, job)
    assert "make install" in commands
    assert "gh run list --workflow nightly-bench.yml" in commands
    assert "--status success" in commands
    assert "gh run download" in commands and "-n nightly-run" in commands
    assert "results/reference/nightly" in commands  # the fallback baseline
    assert "make nightly BASELINE=" in commands
    order = [commands.index(s) for s in ("make install", "gh run list", "make nightly")]
    assert order == sorted(order)
    baseline = next(s for s in steps(workflow, job) if "gh run list" in s.get("run", ""))
    assert "GH_TOKEN" in baseline["env"]
    assert workflow["permissions"]["actions"] == "read"


def test_nightly_always_uploads_the_run_and_writes_the_summary() -> None:
    workflow = load("nightly-bench.yml")
    (job,) = workflow["jobs"]
    upload = uses(workflow, job, "actions/upload-artifact")
    assert upload["with"]["name"] == "nightly-run"
    assert "always()" in upload["if"]
    bench = next(s for s in steps(workflow, job) if "make nightly" in s.get("run", ""))
    after = steps(workflow, job)[steps(workflow, job).index(bench) + 1 :]
    assert upload in after
    summary = [s for s in after if "GITHUB_STEP_SUMMARY" in s.get("run", "")]
    assert len(summary) == 1 and "always()" in summary[0]["if"]
    assert "summary.md" in summary[0]["run"]
    # The job must fail on a regression: the bench step may not swallow make's status.
    assert not bench.get("continue-on-error")
    assert "|| true" not in bench["run"]
