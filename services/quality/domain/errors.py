"""How a quality command fails: it breaks rules (each violation names its field), or the thing's state forbids it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Violation:
    field: str
    message: str


class Rejected(ValueError):
    """A command broke one or more rules; each violation names the offending field."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.message}" for v in violations))
        self.violations = list(violations)


class StateConflict(ValueError):
    """The command is valid but the thing's current state does not allow it (e.g. revoking twice)."""
