"""Time as the services see it: one injectable clock, so tests can move time instead of waiting."""

from __future__ import annotations

from contextvars import ContextVar, Token
from datetime import UTC, date, datetime, timedelta
from typing import Protocol

from .weeks import local_date


class Clock(Protocol):
    def now(self) -> datetime: ...

    def today(self) -> date: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def today(self) -> date:
        return local_date(self.now())  # the cooperative's today: the date in Ceper


class FixedClock:
    """A clock that only moves when told to; for tests."""

    def __init__(self, at: datetime) -> None:
        if at.tzinfo is None:
            raise ValueError("FixedClock needs an aware datetime")
        self._now = at.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def today(self) -> date:
        return local_date(self._now)

    def advance(self, delta: timedelta) -> None:
        self._now += delta

    def set(self, at: datetime) -> None:
        self._now = at.astimezone(UTC)


SYSTEM_CLOCK = SystemClock()


_current: ContextVar[Clock] = ContextVar("ceper_clock", default=SYSTEM_CLOCK)


def now() -> datetime:
    """The current time of the service handling this request or event."""
    return _current.get().now()


def today() -> date:
    return _current.get().today()


def use(clock: Clock) -> Token[Clock]:
    """Makes `clock` the time of this context (and of tasks started from it)."""
    return _current.set(clock)
