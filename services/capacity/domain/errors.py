"""The two ways a capacity command fails: it breaks a rule, or it contradicts what is recorded."""

from __future__ import annotations


class DomainError(ValueError):
    """A rule was broken; `field` names the offending field, the message says which rule."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConflictError(DomainError):
    """The request is well-formed but contradicts what is recorded (an overlapping exception, an expired hold)."""
