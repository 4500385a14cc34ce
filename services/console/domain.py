"""The console's own model: a bounded feed of recent platform events for people to watch. Pure."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class FeedItem:
    id: str
    type: str
    source: str
    subject: str
    time: datetime
    topic: str
    data: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        item = asdict(self)
        item["time"] = self.time.isoformat()
        return item


class EventFeed:
    """The last `size` events, and the listeners waiting for the next ones (slow ones drop, never block)."""

    def __init__(self, size: int = 200) -> None:
        self._items: deque[FeedItem] = deque(maxlen=size)
        self._listeners: set[asyncio.Queue[FeedItem]] = set()

    def add(self, item: FeedItem) -> None:
        self._items.append(item)
        for queue in list(self._listeners):
            if queue.full():
                continue
            queue.put_nowait(item)

    def recent(self, limit: int = 50) -> list[FeedItem]:
        return list(self._items)[-limit:][::-1]

    def listen(self) -> asyncio.Queue[FeedItem]:
        queue: asyncio.Queue[FeedItem] = asyncio.Queue(maxsize=100)
        self._listeners.add(queue)
        return queue

    def forget(self, queue: asyncio.Queue[FeedItem]) -> None:
        self._listeners.discard(queue)
