"""Versioned documents: upgrade an older version to the current one, one step at a time.

Each document sockbench writes (a row, a load result, metadata.json, ab.json,
history.jsonl, explain.json) carries its version under "schema". Its reader keeps one
`Migrations` table beside it: {from_version: step}, where a step takes a document of
that version and returns it as the next version would have written it. `upgrade`
applies the steps in order and sets the version after each, so a reader only ever sees
the current shape. A document it cannot bring up (no version, newer than this code,
older than the oldest step, or a step that refuses because the new version needs
something the old one never measured) is refused with one line that says which and why;
the caller adds where and what to do. docs/formats.md lists the documents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Document = dict[str, Any]
Step = Callable[[Document], Document]
VERSION_KEY = "schema"


class MigrationError(ValueError):
    """A document this code cannot bring to its current version; the message is one line:
    the document's version and the one read, then `why` (which a caller may reuse)."""

    def __init__(self, head: str, why: str) -> None:
        super().__init__(f"{head}: {why}")
        self.why = why


class CannotUpgrade(Exception):
    """Raised by a step: the newer version needs what the older one never recorded.
    The message says what, in a few words; `Migrations.upgrade` frames it."""


@dataclass(frozen=True)
class Migrations:
    """One document's upgrades: `label` names it in messages ("load result schema"),
    `current` is the version its code writes, `steps` maps a version to the step that
    turns it into the next one. An empty table reads the current version only."""

    label: str
    current: int
    steps: Mapping[int, Step] = field(default_factory=dict)

    def __post_init__(self) -> None:
        expected = set(range(self.oldest, self.current))
        if set(self.steps) != expected:  # a gap would strand the versions before it
            raise ValueError(
                f"{self.label}: steps from {sorted(self.steps)}, need one from each of "
                f"{sorted(expected)}"
            )

    @property
    def oldest(self) -> int:
        """The oldest version this code reads (through its steps)."""
        return min(self.steps, default=self.current)

    def upgrade(self, data: Document) -> Document:
        """`data` at the current version (a new dict where a step ran; `data` itself is
        never changed); MigrationError with one line when it cannot be."""
        version = self._check(data.get(VERSION_KEY))
        if version == self.current:
            return data
        upgraded = dict(data)
        head = f"{self._head(version)}, and cannot upgrade it"
        for step_from in range(version, self.current):
            try:
                upgraded = self.steps[step_from](dict(upgraded))
            except CannotUpgrade as exc:
                raise MigrationError(head, str(exc)) from None
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # a step reads the old shape; a document without it is not that version
                why = f"not a well-formed schema {step_from} document ({exc!r})"
                raise MigrationError(head, why) from None
            upgraded[VERSION_KEY] = step_from + 1
        return upgraded

    def _check(self, version: object) -> int:
        """`version` if this code reads it, else MigrationError saying why not."""
        if version is None:
            raise MigrationError(self._head(version), "the document has no version number")
        if not isinstance(version, int) or isinstance(version, bool):
            raise MigrationError(self._head(version), "not a version number")
        if version > self.current:
            raise MigrationError(self._head(version), "written by a newer sockbench")
        if version < self.oldest:
            raise MigrationError(
                self._head(version), f"older than schema {self.oldest}, the oldest it reads"
            )
        return version

    def _head(self, version: object) -> str:
        return f"{self.label} {version!r}, this sockbench reads schema {self.current}"


__all__ = ["CannotUpgrade", "Document", "MigrationError", "Migrations", "Step"]
