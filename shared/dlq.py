"""Dead-letter topics: listing what failed and sending it back to be applied again.

A redrive re-publishes the original event (same id, key and CloudEvents headers) to the retry topic of the
service that dead-lettered it (`ceper.<service>.retry`), which only that service's consumer group reads:
the other services that consume the event's topic never see it again. The redrive is recorded in the
dead-letter topic itself with a marker record, so listing shows what is still pending without any other state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaProducer

from . import kafka
from .events import dlq_topic_of, retry_topic_of
from .inbox import (
    DLQ_ATTEMPTS,
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_ERROR_TYPE,
    DLQ_HEADER_PREFIX,
    DLQ_ORIGIN_OFFSET,
    DLQ_ORIGIN_PARTITION,
    DLQ_ORIGIN_TOPIC,
    DLQ_TIME,
)
from .settings import Settings
from .topics import read_to_end

MARKER = "ceper_dlq_marker"
REDRIVEN_PARTITION = "ceper_dlq_redriven_partition"
REDRIVEN_OFFSET = "ceper_dlq_redriven_offset"


@dataclass
class DeadLetter:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    event_id: str | None
    event_type: str | None
    error: str
    error_type: str
    origin_topic: str
    origin_partition: int
    origin_offset: int
    consumer: str
    attempts: int
    failed_at: datetime | None
    redriven: bool = False
    original_headers: list[tuple[str, bytes]] = field(default_factory=list)


def _text(headers: dict[str, bytes], name: str, default: str = "") -> str:
    raw = headers.get(name)
    return raw.decode("utf-8", "replace") if raw is not None else default


async def list_dead_letters(settings: Settings, service: str, *, include_redriven: bool = False) -> list[DeadLetter]:
    letters: list[DeadLetter] = []
    redriven: set[tuple[int, int]] = set()
    async for records in read_to_end(settings, settings.topic(dlq_topic_of(service))):
        for record in records:
            headers = dict(record.headers)
            if MARKER in headers:
                redriven.add((int(_text(headers, REDRIVEN_PARTITION, "-1")), int(_text(headers, REDRIVEN_OFFSET, "-1"))))
                continue
            failed_at = _text(headers, DLQ_TIME)
            letters.append(
                DeadLetter(
                    partition=record.partition,
                    offset=record.offset,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers),
                    event_id=_text(headers, "ce_id") or None,
                    event_type=_text(headers, "ce_type") or None,
                    error=_text(headers, DLQ_ERROR),
                    error_type=_text(headers, DLQ_ERROR_TYPE),
                    origin_topic=_text(headers, DLQ_ORIGIN_TOPIC),
                    origin_partition=int(_text(headers, DLQ_ORIGIN_PARTITION, "-1")),
                    origin_offset=int(_text(headers, DLQ_ORIGIN_OFFSET, "-1")),
                    consumer=_text(headers, DLQ_CONSUMER),
                    attempts=int(_text(headers, DLQ_ATTEMPTS, "0")),
                    failed_at=datetime.fromisoformat(failed_at) if failed_at else None,
                    original_headers=[(k, v) for k, v in record.headers if not k.startswith(DLQ_HEADER_PREFIX)],
                )
            )
    for letter in letters:
        letter.redriven = (letter.partition, letter.offset) in redriven
    return letters if include_redriven else [letter for letter in letters if not letter.redriven]


async def redrive(
    settings: Settings, service: str, *, event_ids: set[str] | None = None, offsets: set[tuple[int, int]] | None = None
) -> list[DeadLetter]:
    """Re-publishes pending dead letters (all, or those named) to the service's retry topic; returns them."""
    pending = await list_dead_letters(settings, service)
    chosen = [
        letter
        for letter in pending
        if (event_ids is None or letter.event_id in event_ids)
        and (offsets is None or (letter.partition, letter.offset) in offsets)
    ]
    if not chosen:
        return []
    producer: AIOKafkaProducer = kafka.producer(settings, client_id=f"ceper-{service}-redrive")
    await producer.start()
    try:
        dlq_topic = settings.topic(dlq_topic_of(service))
        retry_topic = settings.topic(retry_topic_of(service))
        for letter in chosen:
            if not letter.origin_topic:
                continue  # not one of ours: nothing to send it back to
            # The same key as on its origin topic: the redriven events of one aggregate stay in order.
            await producer.send_and_wait(retry_topic, value=letter.value, key=letter.key, headers=letter.original_headers)
            await producer.send_and_wait(
                dlq_topic,
                value=b"",
                key=letter.key,
                partition=letter.partition,
                headers=[
                    (MARKER, b"redriven"),
                    (REDRIVEN_PARTITION, str(letter.partition).encode()),
                    (REDRIVEN_OFFSET, str(letter.offset).encode()),
                ],
            )
    finally:
        await producer.stop()
    return chosen
