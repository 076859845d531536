"""The results store: one run folder, an append-only JSONL of rows plus metadata.json.

Layout of ``results/<run-id>/`` (see results/README.md)::

    metadata.json   machine, command, CPU plan, start/finish; rewritten atomically
    results.jsonl   one `Row.to_json()` per line, appended and fsynced per cell

A run can be killed at any moment: every finished row is on disk, and a torn last line
(the write the kill interrupted) is dropped with a warning when the rows are read back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import secrets
import warnings
from pathlib import Path
from typing import Any

from bench.record import SCHEMA_VERSION, Row
from common.cli import suggest
from common.invocation import python_m
from common.migrate import MigrationError, Migrations

METADATA_SCHEMA = 1
# metadata.json's upgrades, {from_version: step} (common.migrate, docs/formats.md): none yet
METADATA_MIGRATIONS = Migrations("metadata schema", METADATA_SCHEMA, {})
METADATA_FILE = "metadata.json"
SUBSETS_DIR = "subsets"  # a run's subset reports (bench report --models): RUN/subsets/<choice>/
RESULTS_FILE = "results.jsonl"
RESULTS = Path("results")  # where runs go, and where a bare run id is looked for

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StoreError(Exception):
    """A run folder is missing, unreadable or inconsistent; the message is one line."""


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique-enough id: UTC timestamp plus 4 random hex digits."""
    now = now or dt.datetime.now(dt.UTC)
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    try:
        text = json.dumps(data, indent=2, sort_keys=True, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise StoreError(f"{path}: metadata is not JSON-serialisable: {exc}") from None
    write_text_atomic(path, text)


def write_text_atomic(path: Path, text: str) -> None:
    """Write a temporary file beside `path`, fsync it, then rename it over `path`.

    Readers see the old file or the new one, never half of one, even after a crash.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:  # "x": honours the umask, unlike mkstemp
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform/filesystem allows it.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class RunStore:
    """One run folder. Create it with `create`, reopen it with `open`."""

    def __init__(self, path: Path, metadata: dict[str, Any]) -> None:
        self.path = path
        self._metadata = metadata

    # -- construction ---------------------------------------------------------------

    @classmethod
    def create(cls, root: Path, run_id: str | None, metadata: dict[str, Any]) -> RunStore:
        """Make `root/<run_id>/` (it must not exist yet) and write its metadata.json."""
        run_id = run_id or new_run_id()
        if not _RUN_ID.match(run_id):
            raise StoreError(f"invalid run id {run_id!r}: use letters, digits, '.', '_', '-'")
        path = Path(root) / run_id
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
        except FileExistsError:
            raise StoreError(f"run folder {path} already exists") from None
        except OSError as exc:
            raise StoreError(f"cannot create run folder {path}: {exc.strerror}") from None
        data = dict(metadata)
        data["schema"] = METADATA_SCHEMA
        data["run_id"] = run_id
        _write_json_atomic(path / METADATA_FILE, data)
        (path / RESULTS_FILE).touch()
        return cls(path, data)

    @classmethod
    def open(cls, path: Path) -> RunStore:
        """Open an existing run folder; StoreError if it is not one."""
        path = Path(path)
        meta_path = path / METADATA_FILE
        if not path.is_dir():
            raise StoreError(f"no run folder at {path}")
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"{path} is not a run folder: no {METADATA_FILE}") from None
        except (OSError, ValueError) as exc:
            raise StoreError(f"{meta_path}: unreadable metadata: {exc}") from None
        if not isinstance(metadata, dict):
            raise StoreError(f"{meta_path}: metadata is not a JSON object")
        try:
            metadata = METADATA_MIGRATIONS.upgrade(metadata)
        except MigrationError as exc:
            raise StoreError(f"{meta_path}: {exc}") from None
        return cls(path, metadata)

    # -- metadata -------------------------------------------------------------------

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self._metadata)  # a copy: change it through update_metadata

    @property
    def run_id(self) -> str:
        return str(self._metadata.get("run_id", self.path.name))

    @property
    def results_path(self) -> Path:
        return self.path / RESULTS_FILE

    def update_metadata(self, **fields: Any) -> None:
        """Merge `fields` into metadata.json with an atomic rewrite."""
        data = {**self._metadata, **fields}
        _write_json_atomic(self.path / METADATA_FILE, data)
        self._metadata = data

    # -- rows -----------------------------------------------------------------------

    def append(self, row: Row) -> None:
        """Append one row and force it to disk before returning."""
        line = row.to_json() + "\n"
        with open(self.results_path, "a+b") as f:
            self._drop_torn_tail(f)
            f.write(line.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())

    def _drop_torn_tail(self, f: Any) -> None:
        # A previous process killed mid-write leaves a line without "\n"; appending after
        # it would glue two rows into one corrupt middle line, so cut it off first.
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        f.seek(0)
        data = f.read()
        keep = data.rfind(b"\n") + 1
        warnings.warn(
            f"{self.results_path}: dropping a torn last line "
            f"({size - keep} bytes) before appending",
            RuntimeWarning,
            stacklevel=3,
        )
        f.truncate(keep)
        f.seek(0, os.SEEK_END)

    def rows(self) -> list[Row]:
        """The stored rows in file order, the latest for each cell and repeat: a cell run
        again (`bench run --resume --retry-failed`) replaces its earlier row, which
        stays in the file.

        A last line that is not valid JSON is a write cut short by a crash: it is
        skipped with a RuntimeWarning. Any other bad line is a StoreError naming it.
        """
        try:
            text = self.results_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise StoreError(f"{self.results_path}: {exc.strerror}") from None
        lines = text.split("\n")
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        rows: list[Row] = []
        for index, line in enumerate(lines):
            if not line.strip():
                continue
            where = f"{self.results_path}:{index + 1}"
            try:
                data = json.loads(line)
            except ValueError as exc:
                if index == last:
                    warnings.warn(
                        f"{where}: skipping a truncated last line ({exc})",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                raise StoreError(f"{where}: corrupt line: {exc}") from None
            try:
                rows.append(Row.from_dict(data))
            except MigrationError as exc:  # an older row is upgraded; this one cannot be
                raise StoreError(self._old_schema(data.get("schema"), exc.why)) from None
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise StoreError(f"{where}: invalid row: {exc}") from None
        latest = {(row.cell, row.repeat): i for i, row in enumerate(rows)}
        return [row for i, row in enumerate(rows) if latest[(row.cell, row.repeat)] == i]

    def _old_schema(self, schema: object, why: str) -> str:
        sha = (self._metadata.get("git") or {}).get("sha") or "the revision that made it"
        profile = self._metadata.get("profile") or "quick"
        return (
            f"{self.path}: rows of schema {schema!r}, this sockbench reads schema "
            f"{SCHEMA_VERSION}: run it again ({python_m('bench', 'run', '--profile', profile)}) "
            f"or render it with sockbench at git {sha} ({why})"
        )

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"


LISTED_RUNS = 12  # how many runs an error message lists (newest first)


def find_runs(root: Path, depth: int = 2) -> list[Path]:
    """The run folders under `root` (itself included), at most `depth` levels down,
    newest (by metadata.json's mtime) first."""
    found = [
        meta.parent
        for level in range(depth + 1)
        for meta in Path(root).glob("/".join(["*"] * level + [METADATA_FILE]))
    ]
    return sorted(found, key=lambda run: (run / METADATA_FILE).stat().st_mtime, reverse=True)


def _run_id(run: Path) -> str | None:
    try:
        meta = json.loads((run / METADATA_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta.get("run_id") if isinstance(meta, dict) else None


def resolve_run(text: str | Path, results: Path = RESULTS) -> Path:
    """A run folder from a path or a bare run id (`results/<id>`); StoreError that lists
    the runs there are when it is neither."""
    path = Path(text)
    for candidate in (path, results / path):
        if (candidate / METADATA_FILE).is_file():
            return candidate
    where = path if path.is_dir() else results
    runs = find_runs(where)
    named = [run for run in runs if path.name in (run.name, _run_id(run))]
    if len(named) == 1 and where == results:  # an id or folder name further down
        return named[0]
    if not runs:
        return RunStore.open(path).path  # its own error: no folder, or not a run folder
    shown = ", ".join(str(run) for run in runs[:LISTED_RUNS])
    more = f" and {len(runs) - LISTED_RUNS} more" if len(runs) > LISTED_RUNS else ""
    what = "is a folder of runs, not a run" if where == path else "is not a run folder or run id"
    nearest = suggest(path.name, [run.name for run in runs]) if where != path else ""
    raise StoreError(f"{text} {what}{nearest}; runs in {where}/, newest first: {shown}{more}")
