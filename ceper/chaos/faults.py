"""Striking the planned faults at their moments, from the main thread, and bringing each part back.

A fault whose target is already down (a replica the supervisor is restarting, a poison message while the
broker is away) waits a moment and strikes then, so every planned fault happens once.
"""

from __future__ import annotations

import asyncio
import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shared import kafka
from shared.events import topic_of

from .plan import Poison, Step
from .platform import Platform
from .receiver import WebhookReceiver

POSTPONE_S = 2.0
MAX_POSTPONEMENTS = 45  # 90 s of waiting for the target to be ready for it


@dataclass
class Injected:
    """What was done, for the report."""

    kills: int = 0
    stops: int = 0
    broker_restarts: int = 0
    broker_crashes: int = 0
    postgres_restarts: int = 0
    receiver_down_s: float = 0.0
    poison: dict[int, tuple[str, int, int]] = field(default_factory=dict)  # poison index → where it landed
    missed: list[str] = field(default_factory=list)  # faults that found no moment to strike

    def describe(self) -> str:
        broker = f"{self.broker_restarts} broker restarts" + (
            f" ({self.broker_crashes} by SIGKILL)" if self.broker_crashes else ""
        )
        return (
            f"{self.kills} SIGKILLs, {self.stops} graceful stops, {broker}, {self.postgres_restarts} PostgreSQL restarts, "
            f"webhook receiver down {self.receiver_down_s:.0f} s, {len(self.poison)} poison messages"
        )


@dataclass(order=True)
class _Due:
    at_s: float
    order: int
    action: str = field(compare=False)
    step: Step = field(compare=False)
    postponed: int = field(compare=False, default=0)


class Injector:
    def __init__(
        self,
        platform: Platform,
        receiver: WebhookReceiver,
        poison: Sequence[Poison],
        log: Callable[[str], None],
    ) -> None:
        self.platform = platform
        self.receiver = receiver
        self.poison = {p.index: p for p in poison}
        self.log = log
        self.injected = Injected()
        self._queue: list[_Due] = []
        self._count = 0
        self._receiver_down_at = 0.0

    def _push(self, at_s: float, action: str, step: Step, postponed: int = 0) -> None:
        self._count += 1
        heapq.heappush(self._queue, _Due(at_s, self._count, action, step, postponed))

    def run(self, steps: Sequence[Step], window_s: float) -> Injected:
        """Strikes `steps` over the window (and brings back what is still down after it), supervising meanwhile."""
        started = time.monotonic()
        for step in steps:
            self._push(step.at_s, step.action, step)
        while self._queue or time.monotonic() - started < window_s:
            now = time.monotonic() - started
            while self._queue and self._queue[0].at_s <= now:
                due = heapq.heappop(self._queue)
                if not self._strike(due, now):
                    what = f"{due.action} {due.step.target}".strip()
                    if due.postponed >= MAX_POSTPONEMENTS:
                        self.injected.missed.append(what)
                        self.log(f"fault {what} found no moment to strike: left out")
                    else:
                        self._push(now + POSTPONE_S, due.action, due.step, due.postponed + 1)
                now = time.monotonic() - started
            self.platform.supervise()
            time.sleep(0.2)
        return self.injected

    def _strike(self, due: _Due, now: float) -> bool:
        """Does one step; False when its target is not in a state to take it yet."""
        step, platform = due.step, self.platform
        if due.action in ("kill", "stop"):
            replica = platform.replica(step.target)
            if not replica.alive or replica.held_down:
                return False
            pid = replica.pid
            if due.action == "kill":
                platform.kill(replica)
                self.injected.kills += 1
                self.log(f"fault: SIGKILL {replica.name} (pid {pid}); back in {step.down_s:.1f} s")
            else:
                platform.stop(replica)
                self.injected.stops += 1
                self.log(f"fault: graceful stop of {replica.name} (pid {pid}, SIGTERM); back in {step.down_s:.1f} s")
            self._push(now + step.down_s, "start", step)
        elif due.action == "start":
            replica = platform.replica(step.target)
            if not replica.held_down:
                return True  # the supervisor brought it back already
            if not platform.finish_stopping(replica):
                return False  # still shutting down gracefully
            platform.spawn(replica)
            self.log(f"started {replica.name} (pid {replica.pid})")
        elif due.action == "broker":
            if platform.restarting:
                return False  # one outage of the broker or the database at a time
            platform.restart_broker(step.crash, step.down_s)
            self.injected.broker_restarts += 1
            self.injected.broker_crashes += step.crash
        elif due.action == "postgres":
            if platform.restarting:
                return False
            platform.restart_postgres(step.down_s)
            self.injected.postgres_restarts += 1
        elif due.action == "receiver":
            self.receiver.stop()
            self._receiver_down_at = time.monotonic()
            self.log(f"fault: webhook receiver down for {step.down_s:.0f} s")
            self._push(now + step.down_s, "receiver-up", step)
        elif due.action == "receiver-up":
            self.receiver.start()
            self.injected.receiver_down_s += time.monotonic() - self._receiver_down_at
            self.log("webhook receiver back")
        elif due.action == "poison":
            if platform.restarting:
                return False  # sent while the broker is there, so where it landed is known
            message = self.poison[step.poison]
            origin = asyncio.run(self._send(message))
            self.injected.poison[message.index] = origin
            self.log(
                f"fault: poison message {message.index} ({message.what}) on {origin[0]} partition {origin[1]} offset {origin[2]}"
            )
        else:
            raise ValueError(f"unknown fault step {due.action!r}")
        return True

    async def _send(self, message: Poison) -> tuple[str, int, int]:
        settings = self.platform.settings
        producer = kafka.producer(settings, client_id="ceper-chaos-poison")
        await producer.start()
        try:
            sent = await producer.send_and_wait(
                settings.topic(topic_of(message.topic_owner)), value=message.value, key=message.key, headers=list(message.headers)
            )
        finally:
            await producer.stop()
        return (sent.topic, sent.partition, sent.offset)
