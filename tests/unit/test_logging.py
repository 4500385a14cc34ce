"""A line logged while an event is applied names the event and its trace."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from shared.db import backbone_tables, create_engine, session_factory
from shared.events import Envelope, to_kafka
from shared.events.capacity import FoundryUpdated
from shared.inbox import InboxConsumer, Subscriptions
from shared.logging import configure_logging, get_logger
from shared.settings import Settings
from tests.integration.probe import updated

log = get_logger("tests.handler")


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture) -> Iterator[Callable[[], list[dict]]]:
    """What the service's processors made of each line logged, as the renderer gets it."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("capacity", level="INFO", json=True)
    caplog.set_level(logging.INFO)
    yield lambda: [record.msg for record in caplog.records if isinstance(record.msg, dict)]
    root.handlers[:] = handlers
    root.setLevel(level)


def record_of(envelope: Envelope) -> ConsumerRecord:
    message = to_kafka(envelope)
    key = message.key.encode() if isinstance(message.key, str) else message.key
    return ConsumerRecord("ceper.capacity.v1", 0, 7, 0, 0, key, message.value, None, len(key), len(message.value),
                          list(message.headers.items()))  # fmt: skip


async def test_a_line_logged_by_a_handler_names_the_event_and_its_trace(logged) -> None:
    metadata = sa.MetaData()
    backbone = backbone_tables(metadata)
    engine = create_engine("sqlite+aiosqlite:///:memory:")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)

    async def handler(_session, envelope: Envelope[FoundryUpdated]) -> None:
        log.info("foundry updated", foundry_code=envelope.data.foundry_code)
        log.info("a line naming its own event", event_id="another")

    subscriptions = Subscriptions("orders")
    subscriptions.add(FoundryUpdated, handler)
    consumer = InboxConsumer("orders", subscriptions, session_factory(engine), backbone.inbox, Settings())
    traced, untraced = Envelope.of(updated("IKM-001", 2), trace_id="req-42"), Envelope.of(updated("IKM-002", 2))
    try:
        await consumer.apply({TopicPartition("ceper.capacity.v1", 0): [record_of(traced), record_of(untraced)]})
        log.info("after the batch")
    finally:
        await engine.dispose()

    lines = logged()
    by_message = [(line["event"], line.get("event_id"), line.get("trace_id")) for line in lines]
    assert by_message == [
        ("foundry updated", traced.id, "req-42"),
        ("a line naming its own event", "another", "req-42"),
        # An event without a trace starts its own, named by its id.
        ("foundry updated", untraced.id, untraced.id),
        ("a line naming its own event", "another", untraced.id),
        ("after the batch", None, None),
    ]
    assert consumer.stats.applied == 2
