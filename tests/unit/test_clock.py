"""The injectable clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta

import pytest

from shared import clock


def test_fixed_clock_moves_only_when_told():
    fixed = clock.FixedClock(datetime(2027, 3, 1, 16, 59, tzinfo=UTC))
    assert fixed.today() == date(2027, 3, 1)  # 23:59 in Ceper (UTC+7)
    fixed.advance(timedelta(minutes=1))
    assert fixed.today() == date(2027, 3, 2)  # midnight in Ceper
    with pytest.raises(ValueError):
        clock.FixedClock(datetime(2027, 3, 1))


async def test_context_clock_reaches_tasks_started_after_it_is_set():
    fixed = clock.FixedClock(datetime(2030, 1, 1, tzinfo=UTC))

    async def in_task() -> datetime:
        return clock.now()

    async def scenario() -> tuple[datetime, datetime]:
        clock.use(fixed)
        return clock.now(), await asyncio.create_task(in_task())

    inside = await asyncio.create_task(scenario())
    assert inside == (fixed.now(), fixed.now())
    assert clock.now() != fixed.now()  # the caller's context keeps the system clock
