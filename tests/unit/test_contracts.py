"""Published event contracts: backward compatibility of schemas, and the committed docs matching the registry."""

from __future__ import annotations

import json
import shutil
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from shared.contracts import (
    ASYNCAPI_PATH,
    EVENTS_DIR,
    breaking_changes,
    check_event_schemas,
    export_event_schemas,
    render_asyncapi,
    render_schema,
    schema_path,
)
from shared.events import REGISTRY, schema_of


def changes(old: type[BaseModel], new: type[BaseModel]) -> list[str]:
    return breaking_changes(old.model_json_schema(), new.model_json_schema())


class Family(StrEnum):
    COMPOSITE = "BRAKE_BLOCK_COMPOSITE"
    CAST_IRON = "BRAKE_BLOCK_CAST_IRON"
    PUMP = "PUMP_PARTS"


class FewerFamilies(StrEnum):
    COMPOSITE = "BRAKE_BLOCK_COMPOSITE"
    CAST_IRON = "BRAKE_BLOCK_CAST_IRON"


class MoreFamilies(StrEnum):
    COMPOSITE = "BRAKE_BLOCK_COMPOSITE"
    CAST_IRON = "BRAKE_BLOCK_CAST_IRON"
    PUMP = "PUMP_PARTS"
    SHIP = "SHIP_PARTS"


class Line(BaseModel):
    line_no: int
    quantity: int


class LineWithoutQuantity(BaseModel):
    line_no: int


class Lot(BaseModel):
    lot_code: str
    quantity: int
    family: Family
    lines: list[Line]
    produced_on: date


# --- compatible changes ---------------------------------------------------------------------------------


def test_the_same_schema_is_compatible():
    assert changes(Lot, Lot) == []


def test_adding_an_optional_field_is_compatible():
    class LotWithFurnace(Lot):
        furnace: str | None = None
        cavities: int = 4

    assert changes(Lot, LotWithFurnace) == []


def test_adding_an_enum_value_is_compatible():
    class Old(BaseModel):
        family: Family

    class New(BaseModel):
        family: MoreFamilies

    assert changes(Old, New) == []


def test_making_a_field_optional_is_compatible():
    class New(BaseModel):
        lot_code: str
        quantity: int | None = None
        family: Family
        lines: list[Line]
        produced_on: date

    assert changes(Lot, New) == []


# --- breaking changes -------------------------------------------------------------------------------------


def test_removing_a_field_breaks():
    class New(BaseModel):
        lot_code: str
        family: Family
        lines: list[Line]
        produced_on: date

    assert changes(Lot, New) == ["quantity: removed"]


def test_removing_a_field_of_a_nested_model_breaks():
    class New(BaseModel):
        lot_code: str
        quantity: int
        family: Family
        lines: list[LineWithoutQuantity]
        produced_on: date

    assert changes(Lot, New) == ["lines[].quantity: removed"]


@pytest.mark.parametrize(
    "field, new_type, old_kind",
    [
        ("quantity", str, "integer"),
        ("quantity", float, "integer"),
        ("produced_on", datetime, "string:date"),
        ("lot_code", int, "string"),
    ],
)
def test_changing_a_type_breaks(field: str, new_type: type, old_kind: str):
    new = _with_field(Lot, field, new_type)
    found = changes(Lot, new)
    assert len(found) == 1 and found[0].startswith(f"{field}: type changed from ['{old_kind}']")


def test_making_a_field_required_breaks():
    class Old(BaseModel):
        lot_code: str
        sampled: int | None = None
        cavities: int = 4

    class New(BaseModel):
        lot_code: str
        sampled: int | None
        cavities: int

    assert changes(Old, New) == ["cavities: became required", "sampled: became required"]


def test_adding_a_required_field_breaks():
    # Replay feeds old events to the new model: they lack the field.
    class New(Lot):
        furnace: str

    assert changes(Lot, New) == ["furnace: became required"]


def test_removing_an_enum_value_breaks():
    class Old(BaseModel):
        family: Family

    class New(BaseModel):
        family: FewerFamilies

    assert changes(Old, New) == ["family: enum values removed: ['PUMP_PARTS']"]


def test_changes_inside_optional_fields_break_too():
    class Old(BaseModel):
        family: Family | None = None
        line: Line | None = None
        tags: list[int] | None = None

    class New(BaseModel):
        family: FewerFamilies | None = None
        line: LineWithoutQuantity | None = None
        tags: list[str] | None = None

    assert sorted(changes(Old, New)) == [
        "family: enum values removed: ['PUMP_PARTS']",
        "line.quantity: removed",
        "tags[]: type changed from ['integer'] to ['string']",
    ]


def _with_field(model: type[BaseModel], name: str, annotation: type) -> type[BaseModel]:
    from pydantic import create_model

    fields: dict[str, Any] = {n: (f.annotation, ...) for n, f in model.model_fields.items()}
    fields[name] = (annotation, ...)
    return create_model(model.__name__, **fields)


# --- the committed contracts -----------------------------------------------------------------------------


def test_committed_event_schemas_are_present_current_and_compatible():
    assert check_event_schemas() == []


@pytest.mark.parametrize("event_type", list(REGISTRY), ids=lambda t: t.name)
def test_every_registered_type_has_its_committed_schema(event_type):
    path = schema_path(event_type)
    assert path.parent == EVENTS_DIR and path.is_file(), f"run `ceper contracts export` to write {path.name}"
    committed = json.loads(path.read_text())
    assert committed["title"] == event_type.name
    assert committed == json.loads(render_schema(event_type))


def test_no_committed_schema_without_a_registered_type():
    # A schema whose type was deleted from the code means consumers lost an event silently.
    committed = {p.name.removesuffix(".json") for p in EVENTS_DIR.glob("*.json")}
    assert committed == {t.name for t in REGISTRY}


def test_check_reports_missing_stale_and_breaking_schemas(tmp_path: Path):
    for path in EVENTS_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    registered, updated, received = (
        REGISTRY[n]
        for n in (
            "ceper.capacity.foundry_registered.v1",
            "ceper.capacity.foundry_updated.v1",
            "ceper.orders.purchase_order_received.v1",
        )
    )
    schema_path(registered, tmp_path).unlink()
    stale = schema_of(updated)
    stale["description"] = "an older wording"
    schema_path(updated, tmp_path).write_text(json.dumps(stale))
    # The committed contract had a field the code no longer has: a breaking change.
    published = schema_of(received)
    published["properties"]["currency"] = {"type": "string"}
    schema_path(received, tmp_path).write_text(json.dumps(published))

    problems = check_event_schemas(tmp_path)
    assert len(problems) == 3
    assert problems[0].startswith("ceper.capacity.foundry_registered.v1: no committed schema")
    assert problems[1] == "ceper.capacity.foundry_updated.v1: committed schema is out of date; run `ceper contracts export`"
    assert problems[2].startswith("ceper.orders.purchase_order_received.v1: breaking change (currency: removed)")
    assert "v2" in problems[2]


def test_export_refuses_to_overwrite_a_breaking_change(tmp_path: Path):
    received = REGISTRY["ceper.orders.purchase_order_received.v1"]
    published = schema_of(received)
    published["properties"]["currency"] = {"type": "string"}
    schema_path(received, tmp_path).write_text(json.dumps(published))
    with pytest.raises(ValueError, match="currency: removed"):
        export_event_schemas(tmp_path)
    assert json.loads(schema_path(received, tmp_path).read_text()) == published
    assert [p.name for p in tmp_path.iterdir()] == [schema_path(received).name]


def test_committed_asyncapi_document_is_up_to_date():
    assert ASYNCAPI_PATH.read_text() == render_asyncapi(), "run `ceper contracts export`"


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


def _resolve(document: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"{ref}: only local references are expected"
    node: Any = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve (at {part!r})"
        node = node[part]
    return node


def test_every_ref_in_the_asyncapi_document_resolves():
    document = yaml.safe_load(ASYNCAPI_PATH.read_text())
    refs = _refs(document)
    assert len(refs) > len(REGISTRY) * 2  # headers, payload and channel message of each type at least
    for ref in refs:
        _resolve(document, ref)


def test_asyncapi_document_describes_every_type_on_its_topic():
    document = yaml.safe_load(ASYNCAPI_PATH.read_text())
    assert document["asyncapi"].startswith("3.")
    messages = document["components"]["messages"]
    for event_type in REGISTRY:
        message = messages[event_type.name.replace(".", "_")]
        assert message["name"] == event_type.name
        channel = document["channels"][f"{event_type.service}Events"]
        assert channel["address"] == event_type.topic
        assert any(m["$ref"].endswith(event_type.name.replace(".", "_")) for m in channel["messages"].values())
        payload = _resolve(document, message["payload"]["$ref"])
        assert set(payload["required"]) == {name for name, field in event_type.model.model_fields.items() if field.is_required()}
    headers = document["components"]["schemas"]["CloudEventsHeaders"]
    assert set(headers["required"]) == {
        "ce_id",
        "ce_type",
        "ce_source",
        "ce_specversion",
        "ce_time",
        "ce_subject",
        "content-type",
    }
