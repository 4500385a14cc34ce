"""The orders service as a real process whose clock a test moves forward, for trouble that takes a day to happen
(a buyer's endpoint refusing webhooks until the last retry): `uvicorn --factory
tests.integration.clocked_orders:create_app` with `CEPER_TEST_CLOCK_FILE` naming a file that holds how many
seconds the service's time runs ahead of the system's. Everything else is the orders app as deployed.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI

from services.orders.app import create_app as create_orders_app
from shared.weeks import local_date

CLOCK_FILE = "CEPER_TEST_CLOCK_FILE"


class OffsetClock:
    """The system's time plus the offset in a file, read again whenever the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: int | None = None
        self._offset = timedelta()

    def now(self) -> datetime:
        try:
            changed = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            changed = None
        if changed is not None and changed != self._seen:
            self._offset = timedelta(seconds=float(self.path.read_text() or 0))
            self._seen = changed
        return datetime.now(UTC) + self._offset

    def today(self) -> date:
        return local_date(self.now())


def move_forward(path: Path, seconds: float) -> None:
    """Moves the clock of the process reading `path` forward (the file is written whole, then renamed)."""
    offset = float(path.read_text() or 0) if path.exists() else 0.0
    staged = path.with_suffix(".next")
    staged.write_text(str(offset + seconds))
    staged.replace(path)


def create_app() -> FastAPI:
    return create_orders_app(clock=OffsetClock(Path(os.environ[CLOCK_FILE])))
