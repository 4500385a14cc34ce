"""CloudEvents 1.0 envelope and its Kafka binary-mode encoding (`ce_*` headers, JSON data as the value)."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from cloudevents.core.bindings.kafka import KafkaMessage, from_binary, to_binary
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from pydantic import ValidationError

from .registry import REGISTRY, EventData, EventType

_JSON = JSONFormat()
CONTENT_TYPE = "application/json"
# CloudEvents extension carrying the id of the request or event chain that caused this event.
TRACE_EXTENSION = "traceid"

D = TypeVar("D", bound=EventData)


class MalformedEvent(ValueError):
    """A message on one of our topics that is not a valid event of a known type: never retried."""


@dataclass(frozen=True, slots=True)
class Envelope(Generic[D]):
    type: EventType
    data: D
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    trace_id: str | None = None

    @property
    def key(self) -> str:
        return self.type.key_of(self.data)

    @property
    def subject(self) -> str:
        return self.key

    @classmethod
    def of(cls, data: D, *, trace_id: str | None = None) -> Envelope[D]:
        return cls(type=type(data).event_type(), data=data, trace_id=trace_id)


def to_kafka(envelope: Envelope[Any]) -> KafkaMessage:
    attributes: dict[str, Any] = {
        "id": envelope.id,
        "type": envelope.type.name,
        "source": envelope.type.source,
        "specversion": "1.0",
        "time": envelope.time,
        "subject": envelope.subject,
        "datacontenttype": CONTENT_TYPE,
    }
    if envelope.trace_id:
        attributes[TRACE_EXTENSION] = envelope.trace_id
    cloud_event = CloudEvent(attributes, envelope.data.model_dump(mode="json"))
    return to_binary(cloud_event, _JSON, key_mapper=lambda _: envelope.key)


def event_type_of(headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]) -> str | None:
    """The `ce_type` header, read without parsing the rest: lets a consumer skip types it does not handle."""
    for name, value in headers:
        if name == "ce_type":
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return None
    return None


def from_kafka(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]
) -> Envelope[Any]:
    """Decodes and validates a binary-mode CloudEvent; raises `MalformedEvent` saying what is wrong."""
    if value is not None:
        plain = _plain_attributes(key, headers)
        if plain is not None:
            event_type, event_id, event_time, trace = plain
            try:
                # Parsing and validating in one pass is the cheapest way in; a refusal is explained by the path below.
                data = event_type.model.model_validate_json(value)
            except ValidationError:
                pass
            else:
                return Envelope(type=event_type, data=data, id=event_id, time=event_time, trace_id=trace)
    return _explained(key, value, headers)


def _explained(
    key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes]] | tuple[tuple[str, bytes], ...]
) -> Envelope[Any]:
    """The event decoded the long way, attribute by attribute, or `MalformedEvent` saying what is wrong with it."""
    if value is None:
        raise MalformedEvent("message has no value")
    header_map: dict[str, bytes] = dict(headers)  # a repeated header: the last one counts
    if "ce_type" not in header_map:
        raise MalformedEvent("message has no ce_type header: not a CloudEvent in binary mode")
    # The library would invent an id or a specversion; a redelivery must carry the same id to be deduplicated.
    if not (header_map.get("ce_id") and header_map.get("ce_source") and header_map.get("ce_specversion")):
        missing = [h for h in ("ce_id", "ce_source", "ce_specversion") if not header_map.get(h)]
        raise MalformedEvent(f"message lacks required CloudEvents headers: {', '.join(missing)}")
    decoded = _plain_event(key, value, header_map) or _library_event(key, value, header_map)
    event_type, event_id, event_time, trace, payload = decoded
    try:
        data = event_type.model.model_validate(payload)
    except ValidationError as exc:
        raise MalformedEvent(f"data does not match {event_type.name}: {_summarise(exc)}") from exc
    return Envelope(type=event_type, data=data, id=event_id, time=event_time, trace_id=trace)


_Decoded = tuple[EventType, str, datetime, "str | None", Any]

# The headers `to_kafka` writes. A message with any other CloudEvents attribute takes the library's path.
_PLAIN_ATTRIBUTES = frozenset(
    {"ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "ce_subject", f"ce_{TRACE_EXTENSION}"}
) | {"ce_traceparent", "ce_tracestate"}  # the distributed-tracing extension, written by shared.tracing
_PLAIN_HEADERS = _PLAIN_ATTRIBUTES | {"content-type"}
_TRACE_HEADER = f"ce_{TRACE_EXTENSION}"
# RFC 3339 as `to_kafka` writes it; within this shape `fromisoformat` and the library's parser agree.
_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?(Z|[+-][0-9]{2}:[0-9]{2})")


def _plain_attributes(
    key: bytes | None, headers: Iterable[tuple[str, bytes]]
) -> tuple[EventType, str, datetime, str | None] | None:
    """The attributes of an event shaped exactly as `to_kafka` writes it; None for anything else.

    Every consumed event is decoded here: the library's generic path (dateutil, attribute checks) costs several
    times as much. Anything unusual, a header `to_kafka` does not write included, returns None and gets the long
    way's verdict, so what is accepted or refused, and why, is unchanged.
    """
    try:
        # The library decodes every header it is given, the last of a repeated name counting, as here.
        attributes = {name: raw.decode("utf-8") for name, raw in headers}
        if isinstance(key, bytes):
            key.decode("utf-8")
    except (AttributeError, UnicodeDecodeError):
        return None
    if not attributes.keys() <= _PLAIN_HEADERS:
        return None
    get = attributes.get
    if get("content-type", CONTENT_TYPE) != CONTENT_TYPE or get("ce_specversion") != "1.0" or get("ce_subject") == "":
        return None
    event_id = get("ce_id")
    if not (event_id and get("ce_source")):
        return None
    event_type = REGISTRY.get(get("ce_type", ""))
    time_text = get("ce_time")
    if event_type is None or time_text is None or not _RFC3339.fullmatch(time_text):
        return None
    try:
        event_time = datetime.fromisoformat(time_text)
    except ValueError:
        return None
    return event_type, event_id, event_time, get(_TRACE_HEADER)


def _plain_event(key: bytes | None, value: bytes, header_map: dict[str, bytes]) -> _Decoded | None:
    """`_plain_attributes` with the data parsed, when the data is a JSON object; None for anything else."""
    attributes = _plain_attributes(key, header_map.items())
    if attributes is None:
        return None
    try:
        payload = json.loads(value.decode("utf-8"))
    except (AttributeError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    return (*attributes, payload)


def _library_event(key: bytes | None, value: bytes, header_map: dict[str, bytes]) -> _Decoded:
    try:
        cloud_event = from_binary(KafkaMessage(headers=header_map, key=key, value=value), _JSON, CloudEvent)
    except (BaseCloudEventException, ValueError, UnicodeDecodeError, TypeError) as exc:
        raise MalformedEvent(f"invalid CloudEvent: {exc}") from exc
    if cloud_event.get_specversion() != "1.0":
        raise MalformedEvent(f"unsupported CloudEvents specversion {cloud_event.get_specversion()!r}")
    type_name = cloud_event.get_type()
    event_type = REGISTRY.get(type_name)
    if event_type is None:
        raise MalformedEvent(f"unknown event type {type_name!r}")
    payload = cloud_event.get_data()
    if isinstance(payload, (bytes, str)):
        try:
            payload = json.loads(payload)
        except ValueError as exc:
            raise MalformedEvent(f"data is not JSON: {exc}") from exc
    event_time = cloud_event.get_time() or datetime.now(UTC)
    if event_time.tzinfo is None:
        event_time = event_time.replace(tzinfo=UTC)
    return event_type, cloud_event.get_id(), event_time, cloud_event.get_extension(TRACE_EXTENSION), payload


def _summarise(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors(include_url=False))
