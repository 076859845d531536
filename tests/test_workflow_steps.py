"""The GitHub workflows' jobs, their `run:` steps run in order as the YAML writes them, in a
fresh clone: what only GitHub would otherwise run is tried here first. The nightly job
pushes its history to a local bare repository standing in for `origin`; the pull request
job takes its merge base against a local `origin/main`.

A step runs as GitHub's runner runs it: `bash -e {0}` (`shell: bash`: `bash --noprofile
--norc -eo pipefail {0}`) in the workspace, with the workflow's, the job's and the step's
`env:`, the runner's CI and GITHUB_* variables and its GITHUB_OUTPUT, GITHUB_ENV,
GITHUB_PATH and GITHUB_STEP_SUMMARY files, and `if:` (success() unless it names a status
function). `${{ ... }}` takes the values each test gives (its context); one it does not
give fails the test. What only a GitHub runner can do is replaced by the local equivalent
named in STAND_INS: the actions, the `run:` steps that set up the runner, and `gh`.

The workflows are read from this checkout's working tree; the code they run is its HEAD
(uncommitted changes left out), with a commit or two on top where a job needs a change
to measure. The benchmarks run tiny through ARGS, which `make nightly` and ab-pr.yml's
`bench ab` take from the environment: a check of the plumbing, as in test_nightly.py.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
TINY = "--models epoll --connections 10 --pairs 2 --duration 0.2 --warmup 0.05"
# One counted cell. 1,000 requests between the two counts: a launch's count can miss up to
# about one request's work (where the stop signal finds the server), which is 0.2% of
# the slope over 1,000 requests, 0.4% over 500: too near the gate's 0.5% floor for an A/A.
COUNTED_TINY = "--models epoll --patterns echo/64 --requests 100 1100 --tries 2"
WHO = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@localhost"}
STEP_TIMEOUT = 100  # seconds; pytest-timeout (120 s) bounds each test as a whole
EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
STATUS = ("always()", "success()", "failure()", "cancelled()", "!cancelled()")

# what only a GitHub runner does -> what stands in for it here
STAND_INS = {
    "actions/checkout": "git init + fetch from the bare `origin` in tmp_path, `with: ref` "
    "and `fetch-depth` as the action does them; no credentials to persist or not",
    "actions/setup-python": "this test's interpreter (its version, not the workflow's): its "
    "environment's bin first on PATH, and the workspace's .venv made of links to it with a "
    "fresh install stamp, so that `make install`, run as written, finds it installed rather "
    "than pip-installing the dev extra for minutes",
    "actions/upload-artifact": "a copy of `with: path` under the job's artifacts folder",
    "sudo apt-get": "a step made only of `sudo apt-get` lines: its packages must be installed here "
    "(dpkg), else the test skips; .ci/run installs them",
    "python -m pip install tox": "the tox stand-in goes on PATH: each `-e` environment runs its "
    "tox.ini commands with this interpreter's packages, {posargs} from TOX_POSARGS (a test "
    "or two: `make test` runs the suite; a tox environment would pip-install for minutes)",
    "gh": "on PATH (GitHub's runners have it): `gh run list` prints the answer the test "
    "gives (a commit, or nothing); any other use fails",
}
GH = """#!/usr/bin/env bash
# GitHub's CLI, as tests/test_workflow_steps.py stands it in (on GitHub's runners, gh is
# installed): `gh run list` answers what the file beside this script says.
echo "gh $*" >> "$(dirname "$0")/gh-calls"
if [ "$1 $2" = "run list" ]; then cat "$(dirname "$0")/gh-run-list"; exit; fi
echo "gh stand-in: only 'gh run list' is known, not: gh $*" >&2
exit 1
"""
TOX = '''
"""tox, as tests/test_workflow_steps.py stands it in: each environment named by -e runs
its tox.ini commands with this Python's packages, {posargs} from $TOX_POSARGS."""
import configparser, os, re, shlex, subprocess, sys

ini = configparser.ConfigParser(interpolation=None)
ini.read("tox.ini")
args = sys.argv[1:]
names = args[args.index("-e") + 1] if "-e" in args else ini["tox"]["envlist"]
posargs = shlex.split(os.environ.get("TOX_POSARGS", ""))
failed = []
for name in [n.strip() for n in names.split(",")]:
    section = f"testenv:{name}" if ini.has_section(f"testenv:{name}") else "testenv"
    if section == "testenv" and not re.fullmatch(r"py3\\d+", name):
        sys.exit(f"tox stand-in: no environment {name} in tox.ini")
    for line in ini.get(section, "commands").strip().splitlines():
        words = [w for x in shlex.split(line) for w in (posargs if x == "{posargs}" else [x])]
        if any("{" in w for w in words):
            sys.exit(f"tox stand-in: knows only {{posargs}}: {line}")
        print(f"{name}: commands> {shlex.join(words)}", flush=True)
        if subprocess.call(words) != 0:
            failed.append(name)
            break
print("tox stand-in:", "failed: " + " ".join(failed) if failed else "all passed")
sys.exit(1 if failed else 0)
'''


def git(cwd: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", "-C", str(cwd), *args], input=stdin, capture_output=True, text=True
    )
    assert done.returncode == 0, f"git {shlex.join(args)}: {done.stderr}"
    return done.stdout.strip()


def load(workflow: Path) -> dict[str, Any]:
    data = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{workflow.name} is not a YAML mapping"
    return data


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    """A bare repository standing in for GitHub's: `main` at this checkout's HEAD and no
    other branch (a local clone: hard links, no copy)."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(ROOT), str(bare))
    for ref in git(bare, "for-each-ref", "--format=%(refname)", "refs/heads").split():
        git(bare, "update-ref", "-d", ref)
    git(bare, "update-ref", "refs/heads/main", head.stdout.decode().strip())
    git(bare, "symbolic-ref", "HEAD", "refs/heads/main")
    return bare


def commit(origin: Path, ref: str, parent: str, name: str) -> str:
    """A commit on `parent` that adds the file `name`, at `ref` in `origin`."""
    blob = git(origin, "hash-object", "-w", "--stdin", stdin=f"{name}\n")
    tree = git(origin, "ls-tree", parent + "^{tree}") + f"\n100644 blob {blob}\t{name}\n"
    tree = git(origin, "mktree", stdin=tree)
    env = {**os.environ, **WHO, "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "t@t"}
    sha = subprocess.run(
        ["git", "-C", str(origin), "commit-tree", tree, "-p", parent, "-m", name],
        capture_output=True, text=True, env=env, check=True,
    ).stdout.strip()  # fmt: skip
    git(origin, "update-ref", ref, sha)
    return sha


@dataclass
class Step:
    name: str
    outcome: str  # success, failure or skipped
    output: str = ""


@dataclass(repr=False)  # the report says it all; a failed assert need not repeat it
class Job:
    """One job's run: its workspace, what each step did, its outputs and summary."""

    workspace: Path
    tmp: Path
    origin: Path | None
    context: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)  # GITHUB_ENV's, for later steps
    path: list[str] = field(default_factory=list)  # GITHUB_PATH's and setup-python's
    steps: list[Step] = field(default_factory=list)
    summary: str = ""

    @property
    def ok(self) -> bool:
        return all(s.outcome != "failure" for s in self.steps)

    @property
    def artifacts(self) -> Path:
        return self.tmp / "artifacts"

    def output(self, name: str) -> str:
        return next(s.output for s in self.steps if s.name == name)

    def __repr__(self) -> str:
        return f"Job({self.workspace})"

    def report(self) -> str:
        return "\n".join(f"== {s.name}: {s.outcome}\n{s.output[-4000:]}" for s in self.steps)


def value(expr: str, context: dict[str, Any]) -> Any:
    """A `${{ }}` expression: a name the test gives, a step's output, a 'string', or
    `a || b`."""
    if "||" in expr:
        found: Any = ""
        for part in expr.split("||"):
            if found := value(part.strip(), context):
                break
        return found
    if literal := re.fullmatch(r"'([^']*)'", expr):
        return literal[1]
    if expr.startswith("steps."):  # an output a step did not set: empty, as on GitHub
        return context.get(expr, "")
    if expr not in context:
        pytest.fail(f"${{{{ {expr} }}}}: the test gives it no value (its context)")
    return context[expr]


def expand(text: str, context: dict[str, Any]) -> str:
    return EXPRESSION.sub(lambda m: str(value(m[1], context)), text)


def env_of(spec: dict[str, Any], context: dict[str, Any]) -> dict[str, str]:
    """A workflow's, job's or step's `env:`, its expressions expanded."""
    return {k: expand(str(v), context) for k, v in spec.get("env", {}).items()}


def condition(expr: str | None, job: Job, failed: bool) -> bool:
    """An `if:`, with success() implied unless it names a status function."""
    terms = [t.strip() for t in EXPRESSION.sub(r"\1", str(expr or "")).split("&&") if t.strip()]
    if not any(t in STATUS for t in terms):
        terms.insert(0, "success()")
    for term in terms:
        if term in STATUS:
            holds = {
                "always()": True, "success()": not failed, "failure()": failed,
                "!cancelled()": True,  # nothing here cancels a job
            }.get(term)  # fmt: skip
        elif files := re.fullmatch(r"hashFiles\('([^']+)'\) != ''", term):
            holds = any(p.is_file() for p in job.workspace.glob(files[1]))
        elif has := re.fullmatch(r"contains\(([\w.*-]+), '([^']*)'\)", term):
            holds = has[2] in value(has[1], job.context)
        else:
            pytest.fail(f"if: {expr}: the test cannot evaluate {term!r}; teach condition()")
        if not holds:
            return False
    return True


def checkout(job: Job, given: dict[str, Any]) -> None:
    """A push checks out its branch; a `ref:` or a pull request's merge ref, detached."""
    assert job.origin is not None, "a checkout needs the test's origin"
    ref, depth = given.get("ref") or job.context["github.sha"], int(given.get("fetch-depth", 1))
    ws, fetch = job.workspace, ("fetch", "--quiet", "--update-shallow", "origin")
    git(ws, "init", "--quiet")
    git(ws, "remote", "add", "origin", str(job.origin))
    if depth == 0:  # every branch and tag, as the action fetches them
        git(ws, *fetch, "--tags", "+refs/heads/*:refs/remotes/origin/*")
    have = subprocess.run(["git", "-C", str(ws), "cat-file", "-e", ref], capture_output=True)
    if depth or have.returncode:  # the ref itself (a pull request's head is no branch)
        git(ws, *fetch, *([f"--depth={depth}"] if depth else []), ref)
    branch = job.context["github.ref"].removeprefix("refs/heads/")
    if given.get("ref") or branch == job.context["github.ref"]:
        git(ws, "checkout", "--quiet", "--detach", ref)
    else:
        git(ws, "checkout", "--quiet", "-B", branch, ref)


def setup_python(job: Job, given: dict[str, Any]) -> None:
    prefix = Path(sys.prefix)
    if prefix == Path(sys.base_prefix):
        pytest.skip("no virtual environment to lend the workspace's .venv")
    job.path.insert(0, str(prefix / "bin"))
    makefile = (job.workspace / "Makefile").read_text()
    stamp = re.search(r"^STAMP := \$\(VENV\)/(\S+)$", makefile, re.MULTILINE)
    assert stamp, "the Makefile's STAMP is not $(VENV)/<file>: teach setup_python()"
    venv = job.workspace / ".venv"
    venv.mkdir()
    for entry in prefix.iterdir():
        if entry.name != stamp[1]:
            (venv / entry.name).symlink_to(entry)
    (venv / stamp[1]).touch()  # after the checkout: newer than pyproject.toml


def upload_artifact(job: Job, given: dict[str, Any]) -> None:
    into, found = job.artifacts / str(given["name"]), False
    for pattern in filter(None, map(str.strip, str(given["path"]).splitlines())):
        assert not pattern.startswith("!"), "exclusions: teach upload_artifact()"
        for path in sorted(job.workspace.glob(pattern)):
            found, to = True, into / path.relative_to(job.workspace)
            to.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                shutil.copytree(path, to)
            else:
                shutil.copy2(path, to)
    assert found or given.get("if-no-files-found", "warn") != "error", f"nothing at {given}"


ACTIONS: dict[str, Callable[[Job, dict[str, Any]], None]] = {
    "actions/checkout": checkout,
    "actions/setup-python": setup_python,
    "actions/upload-artifact": upload_artifact,
}


def commands(script: str) -> list[str]:
    """The script's commands, a line each (continuations joined, comments left out)."""
    lines = script.replace("\\\n", " ").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def apt_get(job: Job, script: str) -> None:
    wanted = []
    for line in commands(script):
        words = shlex.split(line)[2:]
        if "install" in words:
            wanted += [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
    if not shutil.which("dpkg-query"):
        pytest.skip(f"no dpkg here to check for {' '.join(wanted)}")
    missing = [
        name for name in wanted
        if subprocess.run(["dpkg-query", "-W", "-f=${Status}", name], capture_output=True)
        .stdout.decode() != "install ok installed"
    ]  # fmt: skip
    if missing:
        pytest.skip(f"the workflow installs {' '.join(missing)} with apt-get: not here")


def install_tox(job: Job, script: str) -> None:
    tox = job.tmp / "bin" / "tox"
    tox.write_text(f"#!{sys.executable}{TOX}")
    tox.chmod(0o755)


SUBSTITUTES: dict[str, Callable[[Job, str], None]] = {
    "sudo apt-get": apt_get,
    "python -m pip install tox": install_tox,
}


def substitute(script: str) -> str | None:
    """Which of SUBSTITUTES stands in for this `run:`, if any."""
    lines = commands(script)
    if any("apt-get" in line for line in lines):
        assert all(line.startswith("sudo apt-get ") for line in lines), (
            "keep `sudo apt-get` lines in a step of their own: the test checks for their "
            f"packages instead of running them, so no other command may share it:\n{script}"
        )
        return "sudo apt-get"
    return lines[0] if len(lines) == 1 and lines[0] in SUBSTITUTES else None


def runner_env(job: Job, workflow: dict[str, Any], extra: dict[str, str]) -> dict[str, str]:
    """A fresh runner's environment: this one's, less what a test or make run here leaves
    in it (the Makefile's `?=` variables would change the steps' make), plus the runner's
    variables and the test's `extra`, which the workflow's `env:` may override."""
    makefile = (ROOT / "Makefile").read_text()
    ours = set(re.findall(r"^(\w+) \?=", makefile, re.M)) | {"VIRTUAL_ENV", "PYTHONPATH"}
    foreign = ("GITHUB_", "RUNNER_", "ACTIONS_", "PYTEST_", "TOX_", "MAKE", "MFLAGS", "GIT_")
    env = {k: v for k, v in os.environ.items() if k not in ours and not k.startswith(foreign)}
    global_config = job.tmp / "gitconfig"
    global_config.touch()  # a runner's git has no user configuration
    env |= {
        "CI": "true", "GITHUB_ACTIONS": "true", "RUNNER_OS": "Linux",
        "RUNNER_TEMP": str(job.tmp / "runner-temp"), "GITHUB_WORKSPACE": str(job.workspace),
        "GITHUB_SHA": job.context["github.sha"], "GITHUB_REF": job.context["github.ref"],
        "GITHUB_EVENT_NAME": job.context["github.event_name"],
        "GITHUB_REPOSITORY": job.context["github.repository"],
        "GIT_CONFIG_GLOBAL": str(global_config), "GIT_CONFIG_NOSYSTEM": "1",
    }  # fmt: skip
    return env | extra | env_of(workflow, job.context)


def file_command(path: Path) -> dict[str, str]:
    """NAME=value lines, and NAME<<DELIMITER blocks, of a GITHUB_OUTPUT-like file."""
    found: dict[str, str] = {}
    lines = iter(path.read_text().splitlines())
    for line in lines:
        name, heredoc, delimiter = line.partition("<<")
        if heredoc and "=" not in name:
            block = []
            for text in lines:
                if text == delimiter:
                    break
                block.append(text)
            found[name] = "\n".join(block)
        elif "=" in line:
            name, _, text = line.partition("=")
            found[name] = text
    return found


def run_step(job: Job, step: dict[str, Any], env: dict[str, str], n: int) -> Step:
    name = step.get("name") or step.get("uses") or commands(step["run"])[0]
    if "uses" in step:
        action = step["uses"].partition("@")[0]
        assert action in ACTIONS, f"no local stand-in for {action}: add one to ACTIONS"
        given = {k: expand(str(v), job.context) for k, v in step.get("with", {}).items()}
        ACTIONS[action](job, given)
        return Step(name, "success", f"stand-in: {STAND_INS[action]}")
    script = expand(step["run"], job.context)
    if stand_in := substitute(script):
        SUBSTITUTES[stand_in](job, script)
        return Step(name, "success", f"stand-in: {STAND_INS[stand_in]}")
    temp = job.tmp / "runner-temp"
    files = {k: temp / f"{n}-{k.lower()}" for k in ("OUTPUT", "ENV", "PATH", "STEP_SUMMARY")}
    for path in files.values():
        path.touch()
    (temp / f"{n}.sh").write_text(script)
    shell = {None: ["bash", "-e"], "bash": ["bash", "--noprofile", "--norc", "-eo", "pipefail"]}
    assert step.get("shell") in shell, f"shell {step['shell']}: teach run_step()"
    env = env | job.env | env_of(step, job.context)
    env |= {f"GITHUB_{k}": str(p) for k, p in files.items()}
    env["PATH"] = os.pathsep.join([*job.path, str(job.tmp / "bin"), env["PATH"]])
    cwd = job.workspace / step.get("working-directory", "")
    status, output = run_script([*shell[step.get("shell")], str(temp / f"{n}.sh")], env, cwd)
    if "id" in step:
        for key, text in file_command(files["OUTPUT"]).items():
            job.context[f"steps.{step['id']}.outputs.{key}"] = text
    job.env |= file_command(files["ENV"])
    job.path[:0] = reversed(files["PATH"].read_text().splitlines())
    job.summary += files["STEP_SUMMARY"].read_text()
    return Step(name, "success" if status == 0 else "failure", output)


def run_script(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int | None, str]:
    """Exit status (None: timed out) and output. Its own session: on a timeout the whole
    group goes, servers included, or their open pipe would keep this waiting."""
    with subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    ) as process:  # fmt: skip
        try:
            output, _ = process.communicate(timeout=STEP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            return None, f"{output}\n(timed out after {STEP_TIMEOUT} s)"
    status = process.returncode
    return status, output + ("" if status == 0 else f"\n(exit {status})")


def run_job(
    workflow_path: Path, job_id: str, tmp: Path, origin: Path | None,
    context: dict[str, Any], extra: dict[str, str] | None = None, gh_answer: str = "",
) -> Job:  # fmt: skip
    """Run one job's steps in order in a new workspace under `tmp`."""
    workflow = load(workflow_path)
    spec = workflow["jobs"][job_id]
    assert "defaults" not in workflow and "defaults" not in spec, "defaults: teach run_job()"
    job = Job(tmp / "workspace", tmp, origin, dict(context))
    for folder in (job.workspace, tmp / "runner-temp", tmp / "bin", job.artifacts):
        folder.mkdir(parents=True)
    (tmp / "bin" / "gh").write_text(GH)
    (tmp / "bin" / "gh").chmod(0o755)
    (tmp / "bin" / "gh-run-list").write_text(gh_answer + "\n" if gh_answer else "")
    assert condition(spec.get("if"), job, False), f"the job would not run: if: {spec['if']}"
    env = runner_env(job, workflow, extra or {})
    env |= env_of(spec, job.context)
    for n, step in enumerate(spec["steps"]):
        if condition(step.get("if"), job, not job.ok):
            done = run_step(job, step, env, n)
            done.outcome = "success" if step.get("continue-on-error") else done.outcome
        else:
            done = Step(step.get("name") or step.get("uses") or f"step {n}", "skipped")
        job.steps.append(done)
    return job


def push(sha: str) -> dict[str, Any]:
    """A push to main (ci.yml), or a scheduled night (nightly-bench.yml) at `sha`."""
    return {
        "github.sha": sha, "github.ref": "refs/heads/main", "github.ref_name": "main",
        "github.event_name": "push", "github.repository": "sockbench/sockbench",
        "github.token": "token-of-the-test",  # for gh: its stand-in reads none
    }  # fmt: skip


SELF_CHECK = """
env: {TOP: workflow}
jobs:
  j:
    runs-on: ubuntu-latest
    env: {WHO: job}
    steps:
      - name: a pipe's status is its last command's
        run: false | true
      - id: s
        env: {WHO: step}
        run: |
          test "$WHO" = step
          test "$TOP" = workflow
          echo "x=${{ inputs.x }}" >> "$GITHUB_OUTPUT"
      - name: stops at the first failing command
        run: |
          false
          echo not reached
      - name: skipped after a failure
        run: echo skipped
      - name: runs always
        if: always()
        run: echo "${{ steps.s.outputs.x }}"
      - name: shell bash adds pipefail
        if: ${{ always() }}
        shell: bash
        run: false | true
"""


def test_steps_run_as_on_github(tmp_path: Path) -> None:
    """bash -e, no pipefail unless `shell: bash`, env by precedence, outputs, if:."""
    (tmp_path / "w.yml").write_text(SELF_CHECK)
    job = run_job(tmp_path / "w.yml", "j", tmp_path / "run", None, push("0" * 40) | {"inputs.x": 1})
    outcomes = [(s.outcome, s.output.strip()) for s in job.steps]
    assert outcomes == [
        ("success", ""), ("success", ""), ("failure", "(exit 1)"), ("skipped", ""),
        ("success", "1"), ("failure", "(exit 1)"),
    ], job.report()  # fmt: skip
    with pytest.raises(pytest.fail.Exception, match="inputs.y"):
        expand("${{ inputs.y }}", job.context)


COVERED = {("ci.yml", "test"), ("nightly-bench.yml", "bench"), ("ab-pr.yml", "ab")}


def test_every_job_of_every_workflow_is_run_here() -> None:
    found = {(p.name, job) for p in sorted(WORKFLOWS.glob("*.y*ml")) for job in load(p)["jobs"]}
    assert found == COVERED, "a job this module does not run: give it a test"


def test_ci_job_tests_and_lints(tmp_path: Path, origin: Path) -> None:
    """tox, stood in: the lint environment whole, pytest on one module (the suite is what
    runs this test). A push checkout is GitHub's default, one commit deep."""
    head = git(origin, "rev-parse", "main")
    job = run_job(WORKFLOWS / "ci.yml", "test", tmp_path, origin, push(head),
                  {"TOX_POSARGS": "tests/test_workflows.py -q -p no:cacheprovider"})  # fmt: skip
    assert job.ok, job.report()
    assert git(job.workspace, "rev-parse", "--is-shallow-repository") == "true"
    tox = job.output("Tests and lint")
    assert "lint: commands> mypy" in tox and "Success: no issues found" in tox, tox
    assert re.search(r"\d+ passed", tox) and "tox stand-in: all passed" in tox, tox


def night(tmp: Path, origin: Path, sha: str, last_good: str) -> Job:
    context = push(sha) | {
        "github.event_name": "schedule",
        "github.event.repository.default_branch": "",  # a schedule's event has none
        "inputs.base": "", "inputs.anchor": "",  # a schedule has no inputs
    }  # fmt: skip
    return run_job(WORKFLOWS / "nightly-bench.yml", "bench", tmp, origin, context,
                   {"ARGS": TINY, "COUNTED_ARGS": COUNTED_TINY}, gh_answer=last_good)  # fmt: skip


def history(origin: Path) -> list[tuple[str, str, str]]:
    """(kind, base, new) of each entry: the wall-clock gate's anchor comparison ("paired")
    and the counted gate's NEW side ("counted", its base the night's)."""
    text = git(origin, "show", "bench-history:history.jsonl")
    return [(e["kind"], e["base_sha"], e["new_sha"]) for e in map(json.loads, text.splitlines())]


@pytest.mark.real
def test_two_nights_push_their_history_to_origin(tmp_path: Path, origin: Path) -> None:
    """Night 1: no last good night, so HEAD~1; the history branch is made and pushed.
    Night 2, a commit later: gh names night 1's commit; the history comes from origin,
    its anchor (night 1's base) differs from the base, so a second run, then a push."""
    anchor = git(origin, "rev-parse", "main")
    first = commit(origin, "refs/heads/main", anchor, "night-1")
    one = night(tmp_path / "night-1", origin, first, last_good="")
    assert one.ok, one.report()
    found = one.output("Find the base and the history")
    assert "no last good night: comparing with HEAD~1" in found, found
    assert "no bench-history branch yet" in found, found
    assert history(origin) == [("paired", anchor, first), ("counted", anchor, first)]
    assert git(origin, "show", "bench-history:anchor") == anchor
    assert (
        "gh run list --workflow nightly-bench.yml --branch main"
        in (tmp_path / "night-1" / "bin" / "gh-calls").read_text()
    )
    assert "0 regression" in one.summary, one.summary
    assert "bench ab --counted" in one.summary, one.summary
    saved = tmp_path / "night-1" / "artifacts" / "nightly-run" / "results"
    assert (saved / "ab" / "nightly" / "ab.md").is_file()
    assert (saved / "ab" / "nightly-counted" / "counted.md").is_file()
    assert (saved / "history" / "history.jsonl").is_file()

    second = commit(origin, "refs/heads/main", first, "night-2")
    two = night(tmp_path / "night-2", origin, second, last_good=first)
    assert two.ok, two.report()
    assert f"history: 2 entries, anchor {anchor}" in two.output("Find the base and the history")
    assert two.context["steps.base.outputs.base"] == first
    assert history(origin) == [
        ("paired", anchor, first), ("counted", anchor, first),
        ("paired", anchor, second), ("counted", first, second),
    ]  # fmt: skip
    assert git(origin, "rev-list", "--count", "bench-history") == "2"
    saved = tmp_path / "night-2" / "artifacts" / "nightly-run" / "results"
    assert (saved / "ab" / "nightly-anchor" / "ab.json").is_file()
    assert (saved / "ab" / "nightly" / "ab.md").is_file()


@pytest.mark.real
def test_pull_request_job_compares_with_the_merge_base(tmp_path: Path, origin: Path) -> None:
    """main moves on after the PR branched: the base is where they part, not main."""
    fork = git(origin, "rev-parse", "main")
    commit(origin, "refs/heads/main", fork, "main-moves-on")
    head = commit(origin, "refs/pull/7/head", fork, "the-change")  # as GitHub keeps it
    context = push(head) | {
        "github.event_name": "pull_request", "github.ref": "refs/pull/7/merge",
        "github.event.pull_request.number": "7",
        "github.event.pull_request.head.sha": head,
        "github.event.pull_request.base.ref": "main",
        "github.event.pull_request.labels.*.name": ["bench-ab"],
    }  # fmt: skip
    job = run_job(WORKFLOWS / "ab-pr.yml", "ab", tmp_path, origin, context,
                  {"ARGS": TINY, "COUNTED_ARGS": COUNTED_TINY})  # fmt: skip
    assert job.ok, job.report()
    assert f"merge base: {fork}" in job.output("bench ab, merge base against the PR head")
    counted = json.loads((job.workspace / "results/ab/pr-counted/counted.json").read_text())
    assert (counted["metadata"]["base"]["sha"], counted["metadata"]["new"]["sha"]) == (fork, head)
    assert [c["verdict"] for c in counted["cells"]] == ["no change"]
    assert "bench ab --counted" in job.summary, job.summary
    assert (job.artifacts / "ab-pr" / "results" / "ab" / "pr-counted" / "counted.md").is_file()
    meta = json.loads((job.workspace / "results/ab/pr/ab.json").read_text())["metadata"]
    assert (meta["base"]["sha"], meta["new"]["sha"], meta["pairs"]) == (fork, head, 2)
    assert "0 regression" in job.summary or "no change" in job.summary, job.summary
    assert (job.artifacts / "ab-pr" / "results" / "ab" / "pr" / "ab.md").is_file()
