"""The console's live feed: bounded, newest first, a slow listener never holds up the others, and each person
sees only what their role may see (NPWP and owners' names only for admin and planner)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.console.domain import (
    ADMIN,
    BUYER,
    FOUNDRY,
    LAB,
    PLANNER,
    QA_OFFICER,
    EventFeed,
    FeedItem,
    Person,
    channels,
    view_of,
)

T0 = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def item(n: int) -> FeedItem:
    return FeedItem(
        id=f"e-{n}",
        type="ceper.capacity.foundry_updated.v1",
        source="/ceper/capacity",
        subject=f"IKM-{n:03d}",
        time=T0 + timedelta(seconds=n),
        topic="ceper.capacity.v1",
        data={"revision": n},
    )


def ids(items: list[FeedItem]) -> list[str]:
    return [i.id for i in items]


def drain(queue: asyncio.Queue[FeedItem]) -> list[str]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait().id)
    return out


def test_recent_is_newest_first_and_limited():
    feed = EventFeed()
    for n in range(1, 6):
        feed.add(item(n))
    assert ids(feed.recent()) == ["e-5", "e-4", "e-3", "e-2", "e-1"]
    assert ids(feed.recent(2)) == ["e-5", "e-4"]


def test_an_empty_feed_has_nothing_recent():
    assert EventFeed().recent() == []


def test_feed_keeps_only_the_last_size_events():
    feed = EventFeed(size=3)
    for n in range(1, 11):
        feed.add(item(n))
    assert ids(feed.recent(50)) == ["e-10", "e-9", "e-8"]


def test_item_as_json_carries_the_envelope_never_the_data():
    as_json = item(7).as_json()
    assert as_json["time"] == "2026-11-24T08:00:07+00:00"
    assert as_json["subject"] == "IKM-007" and "data" not in as_json


def test_every_listener_gets_each_new_event_in_order():
    feed = EventFeed()
    feed.add(item(0))  # before anyone listened: not replayed to listeners
    first, second = feed.listen(), feed.listen()
    for n in range(1, 4):
        feed.add(item(n))
    assert drain(first) == drain(second) == ["e-1", "e-2", "e-3"]


def test_a_slow_listener_loses_events_instead_of_blocking_the_others():
    feed = EventFeed()
    slow, fast = feed.listen(), feed.listen()
    capacity = slow.maxsize
    assert capacity > 0  # bounded: an absent browser tab cannot grow memory without end
    received_fast: list[str] = []
    for n in range(capacity + 50):
        feed.add(item(n))  # returns at once even though `slow` is full
        received_fast += drain(fast)
    assert received_fast == [f"e-{n}" for n in range(capacity + 50)]
    assert drain(slow) == [f"e-{n}" for n in range(capacity)]  # the overflow was dropped for it alone
    # Once it catches up it receives new events again.
    feed.add(item(999))
    assert drain(slow) == ["e-999"]
    assert ids(feed.recent(1)) == ["e-999"]


def test_a_forgotten_listener_gets_nothing_more():
    feed = EventFeed()
    gone, staying = feed.listen(), feed.listen()
    feed.forget(gone)
    feed.forget(gone)  # forgetting twice is harmless: the stream's cleanup may run after a disconnect
    feed.add(item(1))
    assert drain(gone) == [] and drain(staying) == ["e-1"]


async def test_a_waiting_listener_wakes_on_the_next_event():
    feed = EventFeed()
    queue = feed.listen()
    waiting = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    feed.add(item(42))
    got = await asyncio.wait_for(waiting, 1)
    assert got.id == "e-42"


# --- who sees what ------------------------------------------------------------------------------------------------


def event(type_: str, data: dict, source: str | None = None) -> FeedItem:
    service = type_.split(".")[1]
    return FeedItem("e-1", type_, source or f"/ceper/{service}", "s", T0, f"ceper.{service}.v1", data)


REGISTERED = event(
    "ceper.capacity.foundry_registered.v1",
    {
        "foundry_code": "IKM-071",
        "name": "CV Logam Jaya",
        "village": "Batur",
        "owner": "Agus Purwanto",
        "npwp": "3310012345678901",
    },
)
PLANNED = event(
    "ceper.orders.allocation_planned.v1",
    {
        "order_id": "po_1",
        "buyer_code": "KAI",
        "plan_version": 2,
        "allocations": [
            {"foundry_code": "IKM-071", "week": "2027-W14", "quantity": 500},
            {"foundry_code": "IKM-002", "week": "2027-W14", "quantity": 300},
        ],
    },
)
LOT_FAILED = event(
    "ceper.quality.lot_failed.v1", {"lot_code": "L-1", "foundry_code": "IKM-071", "order_id": "po_1", "quantity": 40}
)


def person(role: str, tenant: str | None = None) -> Person:
    return Person(subject="p", name="p", role=role, tenant=tenant)


def test_npwp_and_owner_go_only_to_admin_and_planner():
    for role in (ADMIN, PLANNER):
        seen = view_of(REGISTERED, person(role))
        assert seen is not None and seen.data["npwp"] == "3310012345678901" and seen.data["owner"] == "Agus Purwanto"
    for who in (person(QA_OFFICER), person(FOUNDRY, "IKM-071")):
        seen = view_of(REGISTERED, who)
        assert seen is not None and "npwp" not in seen.data and "owner" not in seen.data
        assert seen.data["name"] == "CV Logam Jaya"
    assert REGISTERED.data["npwp"] == "3310012345678901"  # the feed's own copy is untouched


def test_a_foundry_sees_its_own_events_and_only_its_own_allocations():
    own = person(FOUNDRY, "IKM-071")
    assert view_of(REGISTERED, person(FOUNDRY, "IKM-002")) is None
    assert view_of(LOT_FAILED, own) is not None and view_of(LOT_FAILED, person(FOUNDRY, "IKM-002")) is None
    planned = view_of(PLANNED, own)
    assert planned is not None and [a["foundry_code"] for a in planned.data["allocations"]] == ["IKM-071"]
    assert view_of(PLANNED, person(FOUNDRY, "IKM-099")) is None


def test_buyers_use_the_api_not_the_console_so_the_feed_shows_them_nothing():
    assert view_of(PLANNED, person(BUYER, "KAI")) is None
    assert view_of(PLANNED, person(BUYER, "INKA")) is None
    assert view_of(REGISTERED, person(BUYER, "KAI")) is None
    assert view_of(LOT_FAILED, person(BUYER, "KAI")) is None


def test_a_laboratory_sees_lots_only():
    assert view_of(LOT_FAILED, person(LAB)) is not None
    assert view_of(REGISTERED, person(LAB)) is None and view_of(PLANNED, person(LAB)) is None


def test_an_unknown_role_sees_nothing():
    assert view_of(LOT_FAILED, person("visitor")) is None


def test_an_event_moves_the_pages_it_is_about():
    assert {"order-po_1", "foundry-IKM-071", "foundry-IKM-002", "dashboard", "feed"} <= channels(PLANNED)
    assert {"order-po_1", "foundry-IKM-071", "quality"} <= channels(LOT_FAILED)
    assert "members" in channels(REGISTERED) and not any(c.startswith("order-") for c in channels(REGISTERED))
