"""The registry of event types: one place binds each event's name, topic, key and data model.

Producers, consumers, the JSON Schema export and the AsyncAPI document all read it, so a topic name or a
type name is never spelled twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

SERVICES = ("orders", "capacity", "quality")


class EventData(BaseModel):
    """Base of every event's data. Unknown fields are ignored so a newer producer never breaks an older consumer."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    __event_type__: ClassVar[EventType]

    @classmethod
    def event_type(cls) -> EventType:
        return cls.__event_type__


@dataclass(frozen=True)
class EventType:
    service: str
    event: str
    version: int
    model: type[EventData]
    key_field: str
    description: str

    @functools.cached_property
    def name(self) -> str:  # read for every event consumed: computed once
        return f"ceper.{self.service}.{self.event}.v{self.version}"

    @property
    def topic(self) -> str:
        return topic_of(self.service)

    @functools.cached_property
    def source(self) -> str:
        return f"/ceper/{self.service}"

    def key_of(self, data: EventData) -> str:
        return str(getattr(data, self.key_field))


def topic_of(service: str) -> str:
    return f"ceper.{service}.v1"


def dlq_topic_of(service: str) -> str:
    return f"ceper.{service}.dlq"


def retry_topic_of(service: str) -> str:
    """Where redriven dead letters of `service` go: only that service's consumer group reads it."""
    return f"ceper.{service}.retry"


class EventRegistry:
    def __init__(self) -> None:
        self._by_name: dict[str, EventType] = {}

    def register(self, event_type: EventType) -> None:
        if event_type.service not in SERVICES:
            raise ValueError(f"unknown owning service {event_type.service!r}")
        if event_type.key_field not in event_type.model.model_fields:
            raise ValueError(f"{event_type.name}: key field {event_type.key_field!r} is not a field of its data")
        existing = self._by_name.get(event_type.name)
        if existing is not None and existing.model is not event_type.model:
            raise ValueError(f"event type {event_type.name} registered twice")
        self._by_name[event_type.name] = event_type

    def get(self, name: str) -> EventType | None:
        return self._by_name.get(name)

    def __getitem__(self, name: str) -> EventType:
        return self._by_name[name]

    def __iter__(self) -> Iterator[EventType]:
        return iter(sorted(self._by_name.values(), key=lambda t: t.name))

    def __len__(self) -> int:
        return len(self._by_name)

    def of_service(self, service: str) -> list[EventType]:
        return [t for t in self if t.service == service]


REGISTRY = EventRegistry()

M = TypeVar("M", bound=type[EventData])


def event(service: str, name: str, *, version: int = 1, key: str) -> Callable[[M], M]:
    """Class decorator: registers an `EventData` model as event type `ceper.<service>.<name>.v<version>`."""

    def register(model: M) -> M:
        description = (model.__doc__ or "").strip()
        event_type = EventType(service, name, version, model, key, description)
        REGISTRY.register(event_type)
        model.__event_type__ = event_type
        return model

    return register


def schema_of(event_type: EventType) -> dict[str, Any]:
    schema = event_type.model.model_json_schema()
    schema["$id"] = f"https://ceper.koperasi.id/events/{event_type.name}.json"
    schema["title"] = event_type.name
    if event_type.description:
        schema["description"] = event_type.description
    return schema
