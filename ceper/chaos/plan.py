"""What a chaos run does, drawn from its seed before it starts: the scale, the faults and when they strike,
the poison messages and which services must dead-letter them. Pure: the same seed gives the same plan.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from shared.events import topic_of


@dataclass(frozen=True)
class Scale:
    """How much of everything a run does. `window_s` is the span in which traffic flows and faults strike."""

    name: str
    window_s: float
    members: int
    big_orders: int
    small_orders: int
    capacity_changes: int
    certificate_changes: int
    lot_rounds: int
    shipments: int
    kills_per_replica: int
    graceful_restarts: int
    broker_restarts: int
    postgres_restarts: int
    receiver_down_s: float
    poison: int
    restart_delay_s: tuple[float, float]  # how long a killed or stopped replica stays down
    broker_down_s: tuple[float, float]
    postgres_down_s: tuple[float, float]
    quiet_timeout_s: float  # the bound on waiting for outboxes, lag and webhooks to settle afterwards


QUICK = Scale(
    name="quick", window_s=75, members=12, big_orders=3, small_orders=1, capacity_changes=100, certificate_changes=4,
    lot_rounds=8, shipments=3, kills_per_replica=1, graceful_restarts=1, broker_restarts=1, postgres_restarts=1,
    receiver_down_s=15, poison=4, restart_delay_s=(1, 5), broker_down_s=(4, 8), postgres_down_s=(2, 5), quiet_timeout_s=120,
)  # fmt: skip
FULL = Scale(
    name="full", window_s=600, members=32, big_orders=8, small_orders=2, capacity_changes=500, certificate_changes=12,
    lot_rounds=40, shipments=12, kills_per_replica=4, graceful_restarts=3, broker_restarts=2, postgres_restarts=1,
    receiver_down_s=60, poison=8, restart_delay_s=(1, 10), broker_down_s=(8, 20), postgres_down_s=(3, 8), quiet_timeout_s=300,
)  # fmt: skip


# --- faults -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One fault, `at_s` into the window: down for `down_s`, then back (the injector schedules the way back)."""

    at_s: float
    action: str  # kill, stop (graceful), broker, postgres, receiver, poison
    target: str = ""  # the replica, for kill and stop
    down_s: float = 0.0
    crash: bool = False  # broker: SIGKILL instead of a clean shutdown
    poison: int = -1  # poison: which message


def fault_plan(seed: int, scale: Scale, replicas: Sequence[str]) -> list[Step]:
    """The faults of a run, in time order. Kills of one replica fall in separate slots of the window, so each
    is a fresh kill of a running process; the broker and database restarts fall in slots of their own."""
    rng = random.Random(f"ceper-chaos-faults:{seed}")
    window = scale.window_s
    steps: list[Step] = []
    first, last = 0.05 * window, 0.85 * window
    for name in replicas:
        slot = (last - first) / max(1, scale.kills_per_replica)
        for i in range(scale.kills_per_replica):
            down = rng.uniform(*scale.restart_delay_s)
            at = rng.uniform(first + i * slot, first + (i + 1) * slot - min(slot / 2, down + 5))
            steps.append(Step(at, "kill", name, down))
    for _ in range(scale.graceful_restarts):
        steps.append(Step(rng.uniform(first, last), "stop", rng.choice(list(replicas)), rng.uniform(*scale.restart_delay_s)))
    outages = ["broker"] * scale.broker_restarts + ["postgres"] * scale.postgres_restarts
    rng.shuffle(outages)
    slot = (0.8 - 0.1) * window / max(1, len(outages))
    for i, what in enumerate(outages):
        at = 0.1 * window + i * slot + rng.uniform(0, slot / 2)
        if what == "broker":
            crash = outages[:i].count("broker") % 2 == 1  # every second broker restart is a crash
            steps.append(Step(at, "broker", down_s=rng.uniform(*scale.broker_down_s), crash=crash))
        else:
            steps.append(Step(at, "postgres", down_s=rng.uniform(*scale.postgres_down_s)))
    steps.append(Step(rng.uniform(0.2, 0.45) * window, "receiver", down_s=scale.receiver_down_s))
    for i in range(scale.poison):
        steps.append(Step(rng.uniform(0.1, 0.8) * window, "poison", poison=i))
    return sorted(steps, key=lambda s: (s.at_s, s.action, s.target))


# --- poison -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Poison:
    """A malformed message put on a service's event topic, as a broken client or a bad deploy would."""

    index: int
    topic_owner: str  # the service whose topic it lands on
    event_type: str | None  # its ce_type header; None when it carries no CloudEvents headers at all
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...]
    what: str

    @property
    def event_id(self) -> str | None:
        return dict(self.headers).get("ce_id", b"").decode() or None


_KINDS: tuple[tuple[str, str | None, str], ...] = (
    ("capacity", "ceper.capacity.capacity_changed.v1", "value is not JSON"),
    ("quality", "ceper.quality.lot_registered.v1", "data lacks required fields"),
    ("orders", None, "no CloudEvents headers"),
    ("capacity", "ceper.capacity.foundry_registered.v1", "data of the wrong types"),
)


def poison_messages(seed: int, count: int, keys: Sequence[str]) -> list[Poison]:
    """`count` malformed messages of four kinds in turn, keyed like real events so they share real partitions."""
    rng = random.Random(f"ceper-chaos-poison:{seed}")
    messages = []
    for index in range(count):
        owner, event_type, what = _KINDS[index % len(_KINDS)]
        key = rng.choice(list(keys)).encode()
        if index % len(_KINDS) == 0:
            value = b'{"foundry_code": "' + key + b'", "weeks": ['
        elif index % len(_KINDS) == 1:
            value = json.dumps({"lot_code": f"POISON-{seed}-{index}"}).encode()
        elif index % len(_KINDS) == 2:
            value = b"\x00\xffnot an event"
        else:
            value = json.dumps({"code": key.decode(), "product_families": "BRAKE_BLOCK_COMPOSITE", "revision": "one"}).encode()
        headers: tuple[tuple[str, bytes], ...] = ()
        if event_type is not None:
            headers = (
                ("ce_id", f"chaos-poison-{seed}-{index}".encode()),
                ("ce_type", event_type.encode()),
                ("ce_source", b"/ceper/chaos"),
                ("ce_specversion", b"1.0"),
                ("ce_time", b"2027-01-04T02:00:00Z"),
                ("ce_subject", key),
                ("content-type", b"application/json"),
            )
        messages.append(Poison(index, owner, event_type, key, value, headers, what))
    return messages


class Subscribed(Protocol):
    """What the plan needs of a service's subscriptions (`shared.inbox.Subscriptions`)."""

    @property
    def topics(self) -> list[str]: ...

    def get(self, type_name: str) -> object | None: ...


def dead_letters_expected(poison: Sequence[Poison], subscriptions: Mapping[str, Subscribed]) -> dict[str, set[int]]:
    """Which services must dead-letter which poison message: every consumer of its topic that would decode it,
    i.e. every one when it has no type, else those subscribed to its type (the others skip it unread)."""
    expected: dict[str, set[int]] = {service: set() for service in subscriptions}
    for message in poison:
        topic = topic_of(message.topic_owner)
        for service, subscribed in subscriptions.items():
            if topic in subscribed.topics and (message.event_type is None or subscribed.get(message.event_type) is not None):
                expected[service].add(message.index)
    return expected
