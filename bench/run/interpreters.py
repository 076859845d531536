"""Interpreters as an axis: find one by version or path, give its servers an environment.

`resolve("3.12")` finds an interpreter the way .ci/run's `interpreter()` does (python3.12
on PATH if it runs, else the newest pyenv 3.12.x) and asks it what it is.
`server_env()` makes a virtual environment per interpreter tag under
`<root>/.venv-servers/<tag>` holding only what the servers may import (uvloop, gevent):
the servers run from the project root with `python -m servers`, so the project itself
is not installed there. `availability()` says which models that environment can run;
`server_environ()` is what a model's server process gets in its environment.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

OLDEST = (3, 11)  # pyproject's requires-python
ROOT = Path(__file__).resolve().parents[2]
FACTS_MODULE = ROOT / "servers" / "interpreter.py"
# pyproject.toml's uvloop and gevent extras (tests/test_interpreters.py keeps them equal)
SERVER_NEEDS = ("uvloop>=0.19", "gevent>=23.9")
THREADED_MODELS = frozenset({"threaded", "threadpool"})
ENV_DIR = ".venv-servers"
STAMP = ".sockbench-installed.json"
PROBE_TIMEOUT_S = 30.0
VENV_TIMEOUT_S = 300.0
PIP_TIMEOUT_S = 900.0  # a package without a wheel for this interpreter builds from source
LIST_TIMEOUT_S = 60.0
# The harness's own settings must not leak into another interpreter: a PYTHONPATH of
# 3.11 packages breaks 3.13, and PYTHONSAFEPATH would hide `servers` in the cwd.
FOREIGN_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONSTARTUP", "PYTHON_GIL")

# Runs under whatever the spec names, Python 2 included: only syntax every version
# parses, and the version first, so that an old interpreter is told apart from a broken
# one. From 3.11 on, the facts come from servers/interpreter.py (run by path, so the
# servers package is not imported).
PROBE = """\
import json, sys
v = sys.version_info
if tuple(v[:2]) < (3, 11):
    print(json.dumps({"version": "%d.%d.%d" % tuple(v[:3])}))
else:
    import runpy
    f = runpy.run_path(sys.argv[1])["facts"]()
    f["base_executable"] = getattr(sys, "_base_executable", None) or sys.executable
    print(json.dumps(f))
"""

VERSION_SPEC = re.compile(r"(\d+)\.(\d+)(t?)")
PATH_NAME = re.compile(r"python(\d+\.\d+t?)")


class InterpreterError(ValueError):
    """One line that names the spec (or the environment) and says what is wrong."""


@dataclass(frozen=True)
class Interpreter:
    spec: str  # what the user typed: "3.12", "3.13t", a path
    executable: Path  # the base interpreter (not a virtual environment's link to it)
    version: str  # "3.12.1"
    tag: str  # "3.12", "3.13t" for a free-threaded build
    free_threaded: bool


def resolve(spec: str) -> Interpreter:
    """The interpreter a version ("3.12", "3.13t") or a path names; InterpreterError
    when there is none, it does not run, or it is older than 3.11."""
    match = VERSION_SPEC.fullmatch(spec)
    if match is None:
        return _resolve_path(spec)
    major, minor, t = int(match[1]), int(match[2]), match[3]
    if (major, minor) < OLDEST:
        raise InterpreterError(f"Python {spec}: older than {_dotted(OLDEST)}, the oldest supported")
    name = f"python{major}.{minor}{t}"
    candidates = [Path(found)] if (found := shutil.which(name)) else []
    candidates += [d / "bin" / name for d in _pyenv_versions(major, minor, bool(t))]
    first_error: InterpreterError | None = None
    for candidate in candidates:
        if not candidate.exists():
            continue
        try:
            interp = _probe(spec, candidate)
        except InterpreterError as exc:  # a pyenv shim for a version not selected: next
            first_error = first_error or exc
            continue
        if interp.tag == f"{major}.{minor}{t}":
            return interp
        first_error = first_error or InterpreterError(
            f"Python {spec}: {candidate} is Python {interp.version}"
            f"{' (free-threaded)' if interp.free_threaded else ''}"
        )
    if first_error is not None:
        raise first_error
    found = ", ".join(_installed_tags()) or "none"
    raise InterpreterError(
        f"Python {spec}: not found (looked for {name} on PATH and under "
        f"{_pyenv_root()}/versions); installed here: {found}"
    )


def _resolve_path(spec: str) -> Interpreter:
    if os.sep not in spec:  # a command name ("pypy3"), looked up on PATH
        found = shutil.which(spec)
        if found is None:
            raise InterpreterError(f"Python {spec}: not a version (like 3.12) and not on PATH")
        return _check_age(_probe(spec, Path(found)))
    path = Path(spec).expanduser()
    if not path.exists():
        raise InterpreterError(f"Python {spec}: no such file")
    if path.is_dir() or not os.access(path, os.X_OK):
        raise InterpreterError(f"Python {spec}: not an executable file")
    return _check_age(_probe(spec, path))


def _check_age(interp: Interpreter) -> Interpreter:
    if _version_tuple(interp.version)[:2] < OLDEST:
        raise InterpreterError(
            f"{_label(interp.spec, interp.executable)}: {interp.version} is older than "
            f"{_dotted(OLDEST)}, the oldest supported"
        )
    return interp


def _probe(spec: str, executable: Path) -> Interpreter:
    """Run the interpreter once (-E -s: Python 2 knows them too) and read its facts."""
    command = [str(executable), "-E", "-s", "-c", PROBE, str(FACTS_MODULE)]
    who = _label(spec, executable)
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=PROBE_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            env=clean_environ(os.environ),
        )
    except subprocess.TimeoutExpired:
        raise InterpreterError(
            f"{who}: does not run (no answer in {PROBE_TIMEOUT_S:.0f} s)"
        ) from None
    except OSError as exc:
        raise InterpreterError(f"{who}: does not run ({exc.strerror or exc})") from None
    if done.returncode != 0:
        raise InterpreterError(
            f"{who}: does not run (exit {done.returncode}: {_last_line(done.stderr)})"
        )
    facts = _last_json(done.stdout)
    version = facts.get("version") if facts else None
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise InterpreterError(f"{who}: ran but did not say which version it is")
    if facts is None or "tag" not in facts:  # older than 3.11: the probe said only that
        return Interpreter(spec, executable, version, _tag(version, False), False)
    free_threaded = bool(facts.get("free_threaded"))
    base = facts.get("base_executable")
    return Interpreter(
        spec=spec,
        executable=Path(base) if isinstance(base, str) and base else executable,
        version=version,
        tag=str(facts.get("tag") or _tag(version, free_threaded)),
        free_threaded=free_threaded,
    )


def server_env(
    interp: Interpreter,
    root: Path,
    log: Callable[[str], None] | None = None,
    needs: Sequence[str] = SERVER_NEEDS,
) -> Path:
    """The python of `<root>/.venv-servers/<tag>`, created on first use with `needs`
    installed; reused while its stamp matches the interpreter and `needs`. A package
    that fails to install is recorded and not retried (delete the folder to retry):
    the models that need it are then unavailable, the others run."""
    say = log or (lambda _line: None)
    env_dir = root / ENV_DIR / interp.tag
    python = env_dir / "bin" / "python"
    env_dir.parent.mkdir(parents=True, exist_ok=True)
    # Two benches starting at once must not build the same environment twice over
    with _locked(env_dir.parent / f"{interp.tag}.lock"):
        stamp = _read_stamp(env_dir)
        base = {"executable": str(interp.executable), "version": interp.version}
        fresh = stamp is None or {k: stamp.get(k) for k in base} != base or not python.exists()
        if not fresh and stamp is not None and stamp.get("needs") == list(needs):
            return python
        started = time.monotonic()
        if fresh:
            say(f"{interp.tag}: creating {env_dir} with {interp.executable}")
            _run_or_raise(
                [str(interp.executable), "-m", "venv", "--clear", str(env_dir)],
                f"Python {interp.spec}: cannot create {env_dir}",
                VENV_TIMEOUT_S,
            )
        failed: dict[str, str] = {}
        for need in needs:
            say(f"{interp.tag}: installing {need}")
            reason = _pip_install(python, need)
            if reason is not None:
                failed[need] = reason
                say(f"{interp.tag}: {need} not installed ({reason}); its models are unavailable")
        # The servers run from the root with this python: prove that they import
        availability(python, root)
        installed = _installed(python)
        _write_stamp(
            env_dir, {**base, "needs": list(needs), "installed": installed, "failed": failed}
        )
        versions = ", ".join(f"{name} {version}" for name, version in sorted(installed.items()))
        took = time.monotonic() - started
        say(f"{interp.tag}: done in {took:.0f} s ({versions or 'stdlib only'})")
    return python


def availability(executable: Path, root: Path) -> dict[str, str | None]:
    """Model name -> None when `<executable> -m servers` (run in root) can run it, else
    why not, as `python -m servers list --json` says."""
    done = _run_or_raise(
        [str(executable), "-m", "servers", "list", "--json"],
        f"{executable}: `python -m servers list` failed in {root}",
        LIST_TIMEOUT_S,
        cwd=root,
    )
    models: dict[str, str | None] = {}
    for line in done.stdout.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("model"), str):
            models[row["model"]] = None if row.get("available") else str(row.get("reason"))
    if not models:
        raise InterpreterError(f"{executable}: `python -m servers list` listed no model")
    return models


def server_environ(
    interp: Interpreter, model: str, threaded_models: frozenset[str] = THREADED_MODELS
) -> dict[str, str]:
    """What a model's server process adds to its environment: the GIL forced off for
    the thread models on a free-threaded build, where it is the point of the build."""
    if interp.free_threaded and model in threaded_models:
        return {"PYTHON_GIL": "0"}
    return {}


def clean_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The caller's environment less the variables that would make another interpreter
    import the harness's packages or miss the servers in the working directory."""
    return {k: v for k, v in environ.items() if k not in FOREIGN_VARS}


def _pip_install(python: Path, need: str) -> str | None:
    """None when installed, else why not (one line)."""
    # --prefer-binary: an older wheel above the floor beats building the newest sdist
    command = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    try:
        _run_or_raise([*command, "--prefer-binary", need], "pip install failed", PIP_TIMEOUT_S)
    except InterpreterError as exc:
        return str(exc).removeprefix("pip install failed: ")
    return None


def _installed(python: Path) -> dict[str, str]:
    """Name -> version of what pip put in the environment (pip, setuptools left out)."""
    done = _run_or_raise(
        [str(python), "-m", "pip", "list", "--format", "json", "--disable-pip-version-check"],
        f"{python}: pip list failed",
        LIST_TIMEOUT_S,
    )
    try:
        rows = json.loads(done.stdout)
    except ValueError:
        return {}
    return {
        str(row["name"]).lower(): str(row["version"])
        for row in rows
        if isinstance(row, dict) and str(row.get("name")).lower() not in {"pip", "setuptools"}
    }


def _run_or_raise(
    command: list[str], what: str, timeout: float, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=clean_environ(os.environ),
        )
    except subprocess.TimeoutExpired:
        raise InterpreterError(f"{what}: no answer in {timeout:.0f} s") from None
    except OSError as exc:
        raise InterpreterError(f"{what}: {exc.strerror or exc}") from None
    if done.returncode != 0:
        raise InterpreterError(
            f"{what}: exit {done.returncode}: {_last_line(done.stderr or done.stdout)}"
        )
    return done


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_stamp(env_dir: Path) -> dict[str, object] | None:
    try:
        stamp = json.loads((env_dir / STAMP).read_text())
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def _write_stamp(env_dir: Path, stamp: dict[str, object]) -> None:
    # Written last, by rename: an interrupted build leaves no stamp and is built again
    tmp = env_dir / f"{STAMP}.tmp"
    tmp.write_text(json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    tmp.replace(env_dir / STAMP)


def _pyenv_root() -> Path:
    if root := os.environ.get("PYENV_ROOT"):
        return Path(root)
    if shutil.which("pyenv"):
        try:
            done = subprocess.run(
                ["pyenv", "root"], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S
            )
        except (OSError, subprocess.TimeoutExpired):
            pass
        else:
            if done.returncode == 0 and done.stdout.strip():
                return Path(done.stdout.strip())
    return Path.home() / ".pyenv"


def _pyenv_versions(major: int, minor: int, free_threaded: bool) -> list[Path]:
    """pyenv's version folders for major.minor, newest first: 3.12.1, 3.12.0rc1 (and
    3.12-dev last: a release is the safer pick); for a free-threaded build the names
    pyenv gives those, 3.13.0t and 3.13t-dev."""
    t = "t" if free_threaded else ""
    pattern = re.compile(rf"{major}\.{minor}(?:\.(\d+)(?:(a|b|rc)(\d+))?)?{t}(-dev)?")
    found = []
    try:
        entries = list((_pyenv_root() / "versions").iterdir())
    except OSError:
        return []
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or (match[1] is None and match[4] is None):
            continue  # "3.12" alone is no pyenv name; "3.12t" is not a 3.12
        micro = int(match[1]) if match[1] is not None else -1
        # a final release sorts after its pre-releases: "z" > "rc" > "b" > "a"
        pre = (match[2] or "z", int(match[3] or 0))
        found.append(((micro, pre), entry))
    return [entry for _key, entry in sorted(found, reverse=True)]


def _installed_tags() -> list[str]:
    """The major.minor[t] of every python on PATH and under pyenv, for a not-found error."""
    tags: set[str] = set()
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        try:
            names = os.listdir(directory or ".")
        except OSError:
            continue
        tags.update(m[1] for name in names if (m := PATH_NAME.fullmatch(name)))
    try:
        versions = [entry.name for entry in (_pyenv_root() / "versions").iterdir()]
    except OSError:
        versions = []
    for name in versions:
        if m := re.match(r"(\d+\.\d+)(?:\.\d+\w*?)?(t)?(?:-dev)?$", name):
            tags.add(m[1] + (m[2] or ""))
    return sorted(tags, key=lambda tag: (_version_tuple(tag), tag))


def _label(spec: str, executable: Path) -> str:
    """How an error names the interpreter: the spec, and the file when it differs."""
    return f"Python {spec}" if spec == str(executable) else f"Python {spec} ({executable})"


def _tag(version: str, free_threaded: bool) -> str:
    return ".".join(version.split(".")[:2]) + ("t" if free_threaded else "")


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


def _dotted(version: tuple[int, int]) -> str:
    return ".".join(map(str, version))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message"


def _last_json(stdout: str) -> dict[str, object] | None:
    for line in reversed(stdout.splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        return value if isinstance(value, dict) else None
    return None


@dataclass(frozen=True)
class Prepared:
    """An interpreter ready to run servers: its environment's python, and which
    servers that environment can run (name -> None, or why not)."""

    interpreter: Interpreter
    python: Path
    unavailable: Mapping[str, str | None]


_PREPARED: dict[str, Prepared] = {}


def prepare(spec: str, root: Path = ROOT, log: Callable[[str], None] | None = None) -> Prepared:
    """resolve + server_env + availability, once per spec in this process."""
    if spec not in _PREPARED:
        interp = resolve(spec)
        python = server_env(interp, root, log)
        _PREPARED[spec] = Prepared(interp, python, availability(python, root))
    return _PREPARED[spec]
