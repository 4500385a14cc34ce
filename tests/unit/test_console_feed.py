"""The console's live feed: bounded, newest first, and a slow listener never holds up the others."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from services.console.domain import EventFeed, FeedItem

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


def test_item_as_json_is_serialisable_with_an_iso_time():
    as_json = item(7).as_json()
    assert as_json["time"] == "2026-11-24T08:00:07+00:00"
    assert as_json["data"] == {"revision": 7} and as_json["subject"] == "IKM-007"


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
