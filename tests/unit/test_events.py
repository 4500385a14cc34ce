"""The event contract: the registry of types, topics and keys, and the CloudEvents envelope on Kafka."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pydantic import Field

from shared.events import REGISTRY, Envelope, EventData, MalformedEvent, from_kafka, to_kafka, topic_of
from shared.events import envelope as envelope_module
from shared.events.capacity import FoundryRegistered, FoundryUpdated
from shared.events.fields import INT32_MAX
from shared.events.orders import PurchaseOrderReceived, ReceivedLine
from shared.events.registry import SERVICES, EventRegistry, EventType, dlq_topic_of

NAME = re.compile(r"^ceper\.(orders|capacity|quality)\.[a-z][a-z0-9_]*\.v[1-9][0-9]*$")
CE_HEADERS = {"ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "ce_subject", "content-type"}
NOW = datetime(2026, 11, 24, 8, 30, tzinfo=UTC)


def foundry_updated(**changes: object) -> FoundryUpdated:
    values: dict[str, object] = {
        "foundry_code": "IKM-001",
        "name": "CV Logam Batur",
        "village": "Batur",
        "product_families": ["BRAKE_BLOCK_COMPOSITE"],
        "revision": 3,
        "updated_at": NOW,
    }
    values.update(changes)
    return FoundryUpdated(**values)  # type: ignore[arg-type]


def encoded(data: EventData) -> tuple[Envelope, bytes, bytes, list[tuple[str, bytes]]]:
    envelope = Envelope.of(data)
    message = to_kafka(envelope)
    return envelope, envelope.key.encode(), message.value, list(message.headers.items())


def replaced(headers: list[tuple[str, bytes]], **values: bytes) -> list[tuple[str, bytes]]:
    return [(name, values.get(name, value)) for name, value in headers]


# --- registry -----------------------------------------------------------------------------------------


def test_registry_holds_the_events_the_services_publish():
    names = {t.name for t in REGISTRY}
    assert {
        "ceper.capacity.foundry_registered.v1",
        "ceper.capacity.foundry_updated.v1",
        "ceper.orders.purchase_order_received.v1",
    } <= names
    assert REGISTRY["ceper.capacity.foundry_updated.v1"].model is FoundryUpdated
    assert REGISTRY.get("ceper.capacity.no_such_event.v1") is None


@pytest.mark.parametrize("event_type", list(REGISTRY), ids=lambda t: t.name)
def test_every_type_is_named_routed_and_keyed_by_convention(event_type: EventType):
    assert NAME.match(event_type.name), event_type.name
    assert event_type.name == f"ceper.{event_type.service}.{event_type.event}.v{event_type.version}"
    assert event_type.topic == f"ceper.{event_type.service}.v1" == topic_of(event_type.service)
    assert event_type.source == f"/ceper/{event_type.service}"
    assert event_type.key_field in event_type.model.model_fields
    assert event_type.model.event_type() is event_type
    assert event_type.description, "the model's docstring describes the event in the schema and AsyncAPI"


def test_topics_are_one_per_owning_service():
    assert {t.topic for t in REGISTRY} <= {topic_of(s) for s in SERVICES}
    assert [topic_of(s) for s in SERVICES] == ["ceper.orders.v1", "ceper.capacity.v1", "ceper.quality.v1"]
    assert dlq_topic_of("orders") == "ceper.orders.dlq"
    assert [t.name for t in REGISTRY.of_service("capacity")] == [
        "ceper.capacity.capacity_changed.v1",
        "ceper.capacity.foundry_registered.v1",
        "ceper.capacity.foundry_updated.v1",
        "ceper.capacity.reservation_confirmed.v1",
        "ceper.capacity.reservation_consumed.v1",
        "ceper.capacity.reservation_expired.v1",
        "ceper.capacity.reservation_rejected.v1",
        "ceper.capacity.reservation_released.v1",
        "ceper.capacity.reservation_revoked.v1",
    ]


class _Probe(EventData):
    probe_id: str
    note: str = ""


class _OtherProbe(EventData):
    probe_id: str


def test_registry_refuses_a_key_field_the_data_lacks():
    registry = EventRegistry()
    with pytest.raises(ValueError, match="key field 'lot_code'"):
        registry.register(EventType("quality", "probe", 1, _Probe, "lot_code", ""))
    assert len(registry) == 0


def test_registry_refuses_an_unknown_owning_service():
    with pytest.raises(ValueError, match="unknown owning service"):
        EventRegistry().register(EventType("billing", "probe", 1, _Probe, "probe_id", ""))


def test_registry_refuses_the_same_name_for_another_model():
    registry = EventRegistry()
    registry.register(EventType("quality", "probe", 1, _Probe, "probe_id", ""))
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(EventType("quality", "probe", 1, _OtherProbe, "probe_id", ""))
    assert registry["ceper.quality.probe.v1"].model is _Probe
    # A new version is a new name: both live side by side.
    registry.register(EventType("quality", "probe", 2, _OtherProbe, "probe_id", ""))
    assert [t.name for t in registry] == ["ceper.quality.probe.v1", "ceper.quality.probe.v2"]


def test_event_decorator_refuses_a_second_model_under_a_registered_name():
    from shared.events.registry import event

    with pytest.raises(ValueError, match="registered twice"):

        @event("capacity", "foundry_registered", key="foundry_code")
        class Impostor(EventData):
            foundry_code: str = Field()

    assert REGISTRY["ceper.capacity.foundry_registered.v1"].model is FoundryRegistered


# --- envelope on Kafka ----------------------------------------------------------------------------------


def test_to_kafka_writes_binary_mode_cloudevent_keyed_by_aggregate():
    envelope = Envelope.of(foundry_updated(foundry_code="IKM-042"), trace_id="req-7")
    message = to_kafka(envelope)
    headers = message.headers
    assert set(headers) >= CE_HEADERS
    assert headers["ce_id"] == envelope.id.encode()
    assert headers["ce_type"] == b"ceper.capacity.foundry_updated.v1"
    assert headers["ce_source"] == b"/ceper/capacity"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_subject"] == b"IKM-042"
    assert headers["content-type"] == b"application/json"
    assert headers["ce_traceid"] == b"req-7"
    assert datetime.fromisoformat(headers["ce_time"].decode().replace("Z", "+00:00")) == envelope.time
    assert message.key in ("IKM-042", b"IKM-042") and envelope.key == "IKM-042"
    # The value is the bare data, readable by any Kafka client.
    assert json.loads(message.value) == envelope.data.model_dump(mode="json")


def test_purchase_order_event_is_keyed_by_order_id():
    data = PurchaseOrderReceived(
        order_id="po_1",
        buyer_code="KAI",
        po_number="KAI/PO/2027/00042",
        issued_on=NOW.date(),
        lines=[ReceivedLine(line_no=1, item_code="BB-COMP-K", quantity=1200)],
        received_at=NOW,
    )
    _envelope, key, value, headers = encoded(data)
    assert key == b"po_1" and dict(headers)["ce_subject"] == b"po_1"
    decoded = from_kafka(key, value, headers)
    assert decoded.data == data and decoded.type.topic == "ceper.orders.v1"


def test_envelope_round_trips_through_kafka():
    original = Envelope.of(foundry_updated(), trace_id="req-1")
    message = to_kafka(original)
    decoded = from_kafka(original.key.encode(), message.value, list(message.headers.items()))
    assert decoded == original
    assert decoded.time.tzinfo is not None and decoded.trace_id == "req-1"


def test_an_envelope_without_trace_has_no_trace_header():
    _, key, value, headers = encoded(foundry_updated())
    assert "ce_traceid" not in dict(headers)
    assert from_kafka(key, value, headers).trace_id is None


def test_unknown_data_fields_from_a_newer_producer_are_ignored():
    _, key, value, headers = encoded(foundry_updated())
    newer = json.dumps({**json.loads(value), "furnace": "cupola"}).encode()
    assert from_kafka(key, newer, headers).data == foundry_updated()


# A valid FoundryUpdated: any code and family of the right shape, names as any text within their columns,
# aware times anywhere in the world.
aware_times = st.datetimes(
    min_value=datetime(1970, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=7)), timezone(timedelta(hours=-3, minutes=-30))]),
)
foundry_updates = st.builds(
    FoundryUpdated,
    foundry_code=st.from_regex(r"IKM-[0-9]{3,4}", fullmatch=True),
    name=st.text(max_size=200),
    village=st.text(max_size=100),
    product_families=st.lists(st.from_regex(r"[A-Z][A-Z0-9_]{0,39}", fullmatch=True), max_size=8),
    revision=st.integers(min_value=1, max_value=INT32_MAX),
    updated_at=aware_times,
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(data=foundry_updates, trace=st.none() | st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True))
def test_any_valid_foundry_update_round_trips_unchanged(data: FoundryUpdated, trace: str | None):
    original = Envelope.of(data, trace_id=trace)
    message = to_kafka(original)
    decoded = from_kafka(original.key.encode(), message.value, list(message.headers.items()))
    assert decoded.data == data
    assert decoded.data.updated_at == data.updated_at  # the same instant, whatever the offset
    assert (decoded.id, decoded.type, decoded.trace_id, decoded.key) == (original.id, original.type, trace, data.foundry_code)


# What the fast way in decides, the long way (attribute by attribute, the CloudEvents library for anything
# unusual) decides too: a header changed, added, repeated or dropped, in any order.
header_names = st.sampled_from(
    ["ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "ce_subject", "ce_traceid", "ce_traceparent",
     "content-type", "Content-Type", "CE_ID", "ce_dataschema", "x-forwarded-by"]
)  # fmt: skip
header_values = st.sampled_from(
    [b"1.0", b"", b"\xff\xfe", b"application/json", b"text/plain", b"/ceper/capacity", b"2027-01-05T10:00:00Z",
     b"2027-01-05 10:00:00", b"2027-01-05T10:00:00.123456+07:00", b"ceper.capacity.foundry_updated.v1", b"IKM-042"]
)  # fmt: skip
header_changes = st.lists(st.tuples(st.sampled_from(["set", "add", "drop"]), header_names, header_values), min_size=1, max_size=4)


def decided(decode, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> object:
    try:
        envelope = decode(key, value, headers)
    except MalformedEvent:
        return MalformedEvent
    timed = any(name == "ce_time" for name, _ in headers)  # without one, the library takes the time of decoding
    return envelope.type, envelope.data, envelope.id, envelope.trace_id, envelope.time if timed else None


@hypothesis_settings(max_examples=300, deadline=None)
@given(changes=header_changes, shuffle=st.randoms(use_true_random=False))
def test_the_fast_way_in_decides_as_the_long_way(changes, shuffle):
    _, key, value, headers = encoded(foundry_updated())
    for change, name, new in changes:
        if change == "set":
            headers = [(n, new if n == name else v) for n, v in headers]
        elif change == "add":
            headers.append((name, new))
        else:
            headers = [(n, v) for n, v in headers if n != name]
    shuffle.shuffle(headers)
    assert decided(from_kafka, key, value, headers) == decided(envelope_module._explained, key, value, headers)


def test_the_long_way_decides_a_message_as_written_like_the_fast_way():
    envelope, key, value, headers = encoded(foundry_updated())
    assert envelope_module._explained(key, value, headers) == from_kafka(key, value, headers) == envelope


# --- refusing malformed messages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"name": "x" * 900_000}, "name: String should have at most 200 characters"),
        ({"foundry_code": "IKM-0000000000000000000001"}, "foundry_code: String should match pattern"),
        ({"product_families": ["brake blocks"]}, "product_families.0: String should match pattern"),
        ({"revision": INT32_MAX + 1}, "revision: Input should be less than or equal to 2147483647"),
        ({"npwp": "1" * 33}, "npwp: String should have at most 32 characters"),
    ],
)
def test_refuses_data_beyond_what_the_tables_store(change: dict, reason: str):
    """What PostgreSQL's columns refuse, every consumer refuses before any database sees it, SQLite included."""
    _, key, value, headers = encoded(foundry_updated())
    oversized = json.dumps({**json.loads(value), **change}).encode()
    with pytest.raises(MalformedEvent, match=re.escape(reason)):
        from_kafka(key, oversized, headers)


def test_refuses_a_message_without_headers():
    _, key, value, _ = encoded(foundry_updated())
    with pytest.raises(MalformedEvent, match="ce_type"):
        from_kafka(key, value, [])


def test_refuses_a_message_without_value():
    _, key, _, headers = encoded(foundry_updated())
    with pytest.raises(MalformedEvent, match="no value"):
        from_kafka(key, None, headers)


@pytest.mark.parametrize("value", [b"{not json", b"", b"\xff\xfe", b"not json at all"])
def test_refuses_data_that_is_not_json(value: bytes):
    _, key, _, headers = encoded(foundry_updated())
    with pytest.raises(MalformedEvent):
        from_kafka(key, value, headers)


def test_refuses_an_unknown_type():
    _, key, value, headers = encoded(foundry_updated())
    with pytest.raises(MalformedEvent, match=r"unknown event type 'ceper\.capacity\.furnace_lit\.v1'"):
        from_kafka(key, value, replaced(headers, ce_type=b"ceper.capacity.furnace_lit.v1"))


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", None),  # None: the field is missing
        ("revision", 0),
        ("revision", "third"),
        ("updated_at", "last Lebaran"),
        ("product_families", "BRAKE_BLOCK_COMPOSITE"),
    ],
)
def test_refuses_data_not_matching_the_model_and_names_the_field(field: str, value: object):
    _, key, valid, headers = encoded(foundry_updated())
    body = json.loads(valid)
    if value is None:
        del body[field]
    else:
        body[field] = value
    with pytest.raises(MalformedEvent, match=f"does not match ceper.capacity.foundry_updated.v1: {field}:"):
        from_kafka(key, json.dumps(body).encode(), headers)


def test_refuses_json_that_is_not_an_object():
    _, key, _, headers = encoded(foundry_updated())
    with pytest.raises(MalformedEvent, match="does not match"):
        from_kafka(key, b"[1, 2, 3]", headers)


@pytest.mark.parametrize("version", [b"0.3", b"2.0", b"1", b""])
def test_refuses_another_specversion(version: bytes):
    _, key, value, headers = encoded(foundry_updated())
    with pytest.raises(MalformedEvent):
        from_kafka(key, value, replaced(headers, ce_specversion=version))


@pytest.mark.parametrize("header, bad", [("ce_time", b"yesterday"), ("ce_type", b"\xff\xfe"), ("ce_source", b"")])
def test_refuses_broken_attributes(header: str, bad: bytes):
    _, key, value, headers = encoded(foundry_updated())
    with pytest.raises(MalformedEvent):
        from_kafka(key, value, replaced(headers, **{header: bad}))


def test_refuses_a_message_without_ce_source():
    _, key, value, headers = encoded(foundry_updated())
    with pytest.raises(MalformedEvent, match="source"):
        from_kafka(key, value, [(n, v) for n, v in headers if n != "ce_source"])


# The inbox deduplicates on ce_id: a message without one must not get a fresh id on every delivery.
# shared/events/envelope.py lets the CloudEvents library default both attributes; fix there, then drop the marks.
@pytest.mark.parametrize("header", ["ce_id", "ce_specversion"])
def test_refuses_a_message_missing_a_required_attribute(header: str):
    _, key, value, headers = encoded(foundry_updated())
    with pytest.raises(MalformedEvent):
        from_kafka(key, value, [(n, v) for n, v in headers if n != header])
