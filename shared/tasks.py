"""Background work of a service: one helper to start, restart, cancel and await long-running tasks.

A consumer loop, the outbox relay, a webhook sender or a periodic job runs as a `BackgroundTask`. If its
coroutine ends with an error it is restarted after a growing delay, counted and logged once per crash, so a
bug or an outage never leaves a process that answers HTTP but has silently stopped working. `Backoff` is
the one retry delay every loop shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

from .logging import get_logger

log = get_logger(__name__)


class Backoff:
    """Exponential delays with jitter, from `first` up to `most` seconds; `reset()` after a success."""

    def __init__(self, first: float = 0.1, most: float = 10.0, factor: float = 2.0, jitter: float = 0.1) -> None:
        self.first = first
        self.most = most
        self.factor = factor
        self.jitter = jitter
        self._next = first
        self.failures = 0

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * self.factor, self.most)
        self.failures += 1
        # Jitter keeps replicas that failed together from retrying in lockstep.
        return delay * (1 + random.uniform(-self.jitter, self.jitter))

    async def wait(self) -> float:
        delay = self.next_delay()
        await asyncio.sleep(delay)
        return delay

    def reset(self) -> None:
        self._next = self.first
        self.failures = 0


class BackgroundTask:
    """A named coroutine supervised for the life of a service.

    `run` is the task's whole loop. When it raises, the task is restarted after a backoff delay (reset after
    it has run for `healthy_after_s`, or by `run` itself through the `Backoff` it shares); `on_crash` is told
    of each failure (e.g. to count it). Failures of the `expected` kinds (the broker or the database away) are
    part of normal life: logged as a warning, not as an error. When `run` returns normally the task is done
    and stays done.
    """

    def __init__(
        self,
        name: str,
        run: Callable[[], Awaitable[None]],
        *,
        restart: bool = True,
        backoff: Backoff | None = None,
        healthy_after_s: float = 30.0,
        on_crash: Callable[[BaseException], None] | None = None,
        expected: tuple[type[Exception], ...] = (),
    ) -> None:
        self.name = name
        self._run = run
        self._restart = restart
        self._backoff = backoff or Backoff(first=0.5, most=30.0)
        self._healthy_after_s = healthy_after_s
        self._on_crash = on_crash
        self._expected = expected
        self._task: asyncio.Task[None] | None = None
        self.crashes = 0
        self.last_error: str | None = None
        # While an expected failure repeats (an outage), it is logged when it begins and when it ends, not per retry.
        self._waiting_since: float | None = None

    @property
    def running(self) -> bool:
        """True while the task is alive, including while it waits to be restarted."""
        return self._task is not None and not self._task.done()

    def working(self) -> None:
        """Told by `run` once it has done its work again: ends a wait that was logged, with a line saying so."""
        if self._waiting_since is None:
            return
        down_for = time.monotonic() - self._waiting_since
        self._waiting_since = None
        log.info("background task works again", task=self.name, waited_s=round(down_for, 1))

    def start(self) -> None:
        if self.running:
            return
        self._task = asyncio.create_task(self._supervise(), name=self.name)

    async def stop(self) -> None:
        """Cancels the task and waits until it has finished."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._run()
                self.working()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure of the loop: restart it rather than lose the work
                self.crashes += 1
                self.last_error = f"{type(exc).__name__}: {exc}"[:300]
                if self._on_crash is not None:
                    self._on_crash(exc)
                if not self._restart:
                    log.error("background task failed", task=self.name, error=self.last_error)
                    raise
                if loop.time() - started >= self._healthy_after_s:
                    self._backoff.reset()
                delay = self._backoff.next_delay()
                if isinstance(exc, self._expected):
                    if self._waiting_since is None:
                        self._waiting_since = time.monotonic()
                        log.warning("background task waits, will retry", task=self.name, error=self.last_error)
                    else:
                        log.debug("background task still waits", task=self.name, error=self.last_error)
                else:
                    log.error(
                        "background task failed, restarting", task=self.name, error=self.last_error, restart_in_s=round(delay, 2)
                    )
                await asyncio.sleep(delay)


def every(interval_s: Callable[[], float], work: Callable[[], Awaitable[None]], *, name: str) -> Callable[[], Awaitable[None]]:
    """A loop that runs `work` now and then every `interval_s()`; a failed run is logged and the next one tries again."""

    async def loop() -> None:
        while True:
            try:
                await work()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # each run is its own transaction: a failed run changed nothing
                log.warning("periodic work failed, will run again", job=name, error=str(exc))
            await asyncio.sleep(interval_s())

    return loop
