"""What the console follows: every event topic, from its current end, without a consumer group."""

from __future__ import annotations

import asyncio
import contextlib

from aiokafka import AIOKafkaConsumer

from shared.events import MalformedEvent, from_kafka, topic_of
from shared.events.registry import SERVICES
from shared.logging import get_logger
from shared.service import ServiceRuntime

from .domain import EventFeed, FeedItem

log = get_logger(__name__)


async def follow_events(runtime: ServiceRuntime) -> None:
    feed: EventFeed = runtime.state.setdefault("feed", EventFeed())
    settings = runtime.settings
    topics = [settings.topic(topic_of(s)) for s in SERVICES]
    backoff = 0.5
    while True:
        consumer = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            group_id=None,
            auto_offset_reset="latest",
            enable_auto_commit=False,
            client_id="ceper-console",
        )
        try:
            await consumer.start()
            backoff = 0.5
            runtime.state["following"] = True
            async for record in consumer:
                try:
                    envelope = from_kafka(record.key, record.value, record.headers)
                except MalformedEvent:
                    continue
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
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # broker away: follow again when it is back
            runtime.state["following"] = False
            log.warning("console cannot follow events, will retry", error=str(exc), retry_in_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
        finally:
            await consumer.stop()


async def start_following(runtime: ServiceRuntime) -> None:
    runtime.state.setdefault("feed", EventFeed())
    runtime.state["follow_task"] = asyncio.create_task(follow_events(runtime), name="console-follow-events")


async def stop_following(runtime: ServiceRuntime) -> None:
    task: asyncio.Task[None] | None = runtime.state.pop("follow_task", None)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
