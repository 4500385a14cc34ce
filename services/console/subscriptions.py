"""What the console follows: every event topic, from its current end, without a consumer group; each event also
ends the figures kept until the next one."""

from __future__ import annotations

from aiokafka.errors import KafkaError

from shared import kafka
from shared.events import MalformedEvent, from_kafka, topic_of
from shared.events.registry import SERVICES
from shared.logging import get_logger
from shared.service import ServiceRuntime
from shared.tasks import BackgroundTask, Backoff

from .domain import EventFeed, FeedItem, UntilNextEvent

log = get_logger(__name__)


async def follow_events(runtime: ServiceRuntime, backoff: Backoff) -> None:
    """Adds every event to the feed until cancelled; the broker away ends it, and its task follows again later."""
    feed: EventFeed = runtime.state.setdefault("feed", EventFeed())
    figures: UntilNextEvent = runtime.state.setdefault("figures", UntilNextEvent())
    settings = runtime.settings
    topics = [settings.topic(topic_of(s)) for s in SERVICES]
    # The live feed shows what happens from now on: no group, no commits, start at the end.
    consumer = kafka.consumer(settings, *topics, group_id=None, client_id="ceper-console", auto_offset_reset="latest")
    try:
        await consumer.start()
        backoff.reset()
        runtime.state["following"] = True
        async for record in consumer:
            try:
                envelope = from_kafka(record.key, record.value, record.headers)
            except MalformedEvent:
                continue
            figures.changed()  # before the open pages hear of the event and ask for their figures again
            feed.add(
                FeedItem(
                    id=envelope.id,
                    type=envelope.type.name,
                    source=envelope.type.source,
                    subject=envelope.subject,
                    time=envelope.time,
                    topic=record.topic,
                    data=envelope.data.model_dump(mode="json"),
                )
            )
    finally:
        runtime.state["following"] = False
        await consumer.stop()


async def start_following(runtime: ServiceRuntime) -> None:
    runtime.state.setdefault("feed", EventFeed())
    runtime.state.setdefault("figures", UntilNextEvent())
    backoff = Backoff(first=0.5, most=5.0)
    task = BackgroundTask(
        "console-follow-events",
        lambda: follow_events(runtime, backoff),
        backoff=backoff,
        expected=(KafkaError, OSError, TimeoutError),
    )
    runtime.state["follow_task"] = task
    task.start()


async def stop_following(runtime: ServiceRuntime) -> None:
    task: BackgroundTask | None = runtime.state.pop("follow_task", None)
    if task is not None:
        await task.stop()
