"""Interpreters as an axis: the facts a server reports, finding an interpreter by version
or path, and the servers' environment per interpreter (one real build, marked real)."""

from __future__ import annotations

import json
import re
import selectors
import shutil
import subprocess
import sys
import sysconfig
import time
import tomllib
from pathlib import Path

import pytest

from bench.run.interpreters import (
    SERVER_NEEDS,
    Interpreter,
    InterpreterError,
    availability,
    resolve,
    server_env,
    server_environ,
)
from servers import MODELS
from servers.interpreter import facts

ROOT = Path(__file__).resolve().parent.parent
PYENV = Path.home() / ".pyenv"


def test_facts_describe_this_interpreter() -> None:
    got = facts()
    assert got["version"] == ".".join(map(str, sys.version_info[:3]))
    free = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    assert got["free_threaded"] is free
    assert got["tag"] == f"{sys.version_info[0]}.{sys.version_info[1]}" + ("t" if free else "")
    assert got["implementation"] == sys.implementation.name
    assert got["executable"] == sys.executable
    is_gil_enabled = getattr(sys, "_is_gil_enabled", None)
    assert got["gil_enabled"] is (bool(is_gil_enabled()) if is_gil_enabled else True)
    json.dumps(got)  # it goes into a JSON line as it is


def test_facts_on_313_read_the_gil_state() -> None:
    """3.13 has sys._is_gil_enabled(): the module reads it (True: not a free-threaded
    build) and prints the facts as `python -m servers.interpreter`."""
    python = PYENV / "versions" / "3.13.0" / "bin" / "python3.13"
    if not python.exists():
        pytest.skip("no pyenv 3.13.0 here")
    done = subprocess.run(
        [str(python), "-m", "servers.interpreter"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    got = json.loads(done.stdout)
    assert got["version"] == "3.13.0" and got["tag"] == "3.13"
    assert got["free_threaded"] is False and got["gil_enabled"] is True


def test_resolve_finds_a_pyenv_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    versions = PYENV / "versions"
    if not (versions / "3.12.1").exists():
        pytest.skip("no pyenv 3.12.1 here")
    if len(list(versions.glob("3.12.*"))) > 1:
        pytest.skip("another 3.12.x under pyenv: the newest would win")
    monkeypatch.setenv("PATH", str(tmp_path))  # no python3.12 on PATH: pyenv's it is
    monkeypatch.setenv("PYENV_ROOT", str(PYENV))
    interp = resolve("3.12")
    assert interp == Interpreter(
        spec="3.12",
        executable=versions / "3.12.1" / "bin" / "python3.12",
        version="3.12.1",
        tag="3.12",
        free_threaded=False,
    )


@pytest.mark.parametrize(
    "spec, message",
    [
        ("2.7", "older than 3.11"),
        ("3.10", "older than 3.11"),
        ("3.99", "not found"),
        ("3.99t", "not found"),
        ("/nonexistent/python", "no such file"),
        ("no-such-python-here", "not on PATH"),
        ("/etc/passwd", "not an executable"),
    ],
)
def test_resolve_refuses_in_one_line(spec: str, message: str) -> None:
    with pytest.raises(InterpreterError) as caught:
        resolve(spec)
    text = str(caught.value)
    assert message in text and spec in text
    assert "\n" not in text


def test_not_found_lists_what_is_installed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    root = tmp_path / "pyenv"
    for name in ("3.12.1", "3.13.0t"):
        (root / "versions" / name / "bin").mkdir(parents=True)
    monkeypatch.setenv("PYENV_ROOT", str(root))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(
        InterpreterError, match=r"3\.14: not found .*installed here: 3\.12, 3\.13t$"
    ):
        resolve("3.14")


def test_a_python_2_is_told_apart_from_a_broken_one() -> None:
    """The probe runs under Python 2 too and says its version, not a syntax error."""
    matches = sorted((PYENV / "versions").glob("2.7.*/bin/python2.7"))
    if not matches:
        pytest.skip("no pyenv 2.7 here")
    with pytest.raises(InterpreterError, match=r": 2\.7\.\d+ is older than 3\.11"):
        resolve(str(matches[-1]))


def fake_python(path: Path, version: str, free_threaded: bool = False, exit: int = 0) -> Path:
    """A shell script that answers the probe as an interpreter of that version would."""
    tag = ".".join(version.split(".")[:2]) + ("t" if free_threaded else "")
    answer = {
        "version": version,
        "tag": tag,
        "implementation": "cpython",
        "executable": str(path),
        "free_threaded": free_threaded,
        "gil_enabled": not free_threaded,
        "base_executable": str(path),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    body = f"echo '{json.dumps(answer)}'" if exit == 0 else f"echo boom >&2; exit {exit}"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


def test_free_threaded_spec_finds_the_newest_t_build(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """pyenv's names for free-threaded builds (3.13.0t, 3.13t-dev), newest release first;
    a plain 3.13 is not a 3.13t, nor the other way round."""
    versions = tmp_path / "pyenv" / "versions"
    fake_python(versions / "3.13.0t" / "bin" / "python3.13t", "3.13.0", free_threaded=True)
    fake_python(versions / "3.13.1t" / "bin" / "python3.13t", "3.13.1", free_threaded=True)
    fake_python(versions / "3.13t-dev" / "bin" / "python3.13t", "3.13.2", free_threaded=True)
    fake_python(versions / "3.13.5" / "bin" / "python3.13", "3.13.5")
    monkeypatch.setenv("PYENV_ROOT", str(versions.parent))
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    interp = resolve("3.13t")
    assert interp.version == "3.13.1" and interp.tag == "3.13t" and interp.free_threaded
    assert interp.executable == versions / "3.13.1t" / "bin" / "python3.13t"
    plain = resolve("3.13")
    assert plain.version == "3.13.5" and not plain.free_threaded


def test_path_first_and_a_broken_one_falls_back_to_pyenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Like .ci/run's interpreter(): python3.X on PATH when it runs (a pyenv shim for a
    version not selected does not), else pyenv's."""
    on_path = tmp_path / "bin"
    versions = tmp_path / "pyenv" / "versions"
    fake_python(versions / "3.12.4" / "bin" / "python3.12", "3.12.4")
    monkeypatch.setenv("PYENV_ROOT", str(versions.parent))
    monkeypatch.setenv("PATH", str(on_path))
    fake_python(on_path / "python3.12", "3.12.9")
    assert resolve("3.12").version == "3.12.9"
    fake_python(on_path / "python3.12", "3.12.9", exit=127)
    assert resolve("3.12").version == "3.12.4"


def test_an_interpreter_that_does_not_run(tmp_path: Path) -> None:
    broken = fake_python(tmp_path / "python", "3.12.0", exit=3)
    with pytest.raises(InterpreterError, match=r"does not run \(exit 3: boom\)"):
        resolve(str(broken))
    mute = tmp_path / "mute"
    mute.write_text("#!/bin/sh\necho hello\n")
    mute.chmod(0o755)
    with pytest.raises(InterpreterError, match="did not say which version"):
        resolve(str(mute))


def test_server_environ_turns_the_gil_off_for_threads_on_free_threaded_builds() -> None:
    plain = Interpreter("3.13", Path("/p"), "3.13.0", "3.13", free_threaded=False)
    free = Interpreter("3.13t", Path("/p"), "3.13.0", "3.13t", free_threaded=True)
    assert server_environ(free, "threaded") == {"PYTHON_GIL": "0"}
    assert server_environ(free, "threadpool") == {"PYTHON_GIL": "0"}
    assert server_environ(free, "epoll") == {}
    assert server_environ(free, "gevent") == {}
    assert server_environ(plain, "threaded") == {}
    assert server_environ(free, "epoll", frozenset({"epoll"})) == {"PYTHON_GIL": "0"}


def test_server_needs_are_pyprojects_extras() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert SERVER_NEEDS == (*extras["uvloop"], *extras["gevent"])


def test_availability_lists_every_model() -> None:
    got = availability(Path(sys.executable), ROOT)
    assert {"blocking", "threaded", "epoll", "asyncio", "uvloop", "gevent"} <= set(got)
    assert got["epoll"] is None
    for name in set(got) & set(MODELS):  # the table may grow while the tests run
        assert got[name] == MODELS[name].unavailable_reason()


def test_availability_of_an_environment_that_cannot_run_the_servers(tmp_path: Path) -> None:
    broken = fake_python(tmp_path / "python", "3.12.0", exit=1)
    with pytest.raises(InterpreterError, match=r"servers list` failed .*exit 1: boom$"):
        availability(broken, ROOT)


def other_interpreter() -> Interpreter:
    """The newest interpreter here other than the one running the tests."""
    this = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for spec in ("3.13", "3.12", "3.11"):
        if spec == this:
            continue
        try:
            return resolve(spec)
        except InterpreterError:
            continue
    pytest.skip("no other interpreter of 3.11 or newer here")


def ready_line(python: Path, root: Path, model: str) -> dict[str, object]:
    """Start `python -m servers run MODEL` from root, read its ready line, kill it."""
    proc = subprocess.Popen(
        [str(python), "-m", "servers", "run", model, "--port", "0"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            line = proc.stdout.readline() if sel.select(30) else ""
    finally:
        proc.kill()  # by this Popen's pid
        _out, err = proc.communicate(timeout=30)
    assert line, f"{model} printed no ready line: {err[-500:]}"
    event: dict[str, object] = json.loads(line)
    return event


@pytest.mark.real
@pytest.mark.timeout(600)
def test_server_env_is_built_once_and_runs_the_servers(tmp_path: Path) -> None:
    """A real environment for another interpreter with uvloop (a wheel, quick) and a
    package that cannot be installed: that failure is logged, not fatal."""
    interp = other_interpreter()
    root = tmp_path / "checkout"
    for package in ("servers", "common"):  # all `python -m servers` imports
        shutil.copytree(
            ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    missing = str(tmp_path / "nothing-1.0-py3-none-any.whl")  # fails without the network
    needs = ("uvloop>=0.19", missing)
    lines: list[str] = []
    started = time.monotonic()
    python = server_env(interp, root, lines.append, needs=needs)
    took = time.monotonic() - started
    print(f"built the {interp.tag} servers' environment in {took:.1f} s: {lines}")
    assert python == root / ".venv-servers" / interp.tag / "bin" / "python"
    tag = interp.tag
    assert len(lines) == 5 and lines[0].startswith(f"{tag}: creating {python.parent.parent}")
    assert lines[1:3] == [f"{tag}: installing uvloop>=0.19", f"{tag}: installing {missing}"]
    assert lines[3].startswith(f"{tag}: {missing} not installed (")
    assert re.fullmatch(rf"{re.escape(tag)}: done in \d+ s \(.*uvloop \S+.*\)", lines[4])
    stamp = json.loads((python.parent.parent / ".sockbench-installed.json").read_text())
    assert "uvloop" in stamp["installed"] and list(stamp["failed"]) == [missing]
    models = availability(python, root)
    assert models["uvloop"] is None
    assert models["gevent"] == "needs the gevent package"
    assert models["epoll"] is None
    again: list[str] = []
    assert server_env(interp, root, again.append, needs=needs) == python
    assert again == []  # the stamp matches: reused as it is
    for model in ("epoll", "uvloop"):
        ready = ready_line(python, root, model)
        assert ready["event"] == "ready" and ready["model"] == model
