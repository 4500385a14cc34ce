"""Published contracts generated from the event registry: JSON Schemas and the AsyncAPI 3 document.

`docs/events/<type>.json` is the contract consumers rely on. A model change must stay backward
compatible with it (new optional fields are fine); removing or retyping a field needs a new version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .events import REGISTRY, dlq_topic_of, retry_topic_of, schema_of, topic_of
from .events.registry import SERVICES, EventType

ROOT = Path(__file__).resolve().parent.parent
EVENTS_DIR = ROOT / "docs" / "events"
ASYNCAPI_PATH = ROOT / "docs" / "asyncapi.yaml"


def schema_path(event_type: EventType, directory: Path = EVENTS_DIR) -> Path:
    return directory / f"{event_type.name}.json"


def render_schema(event_type: EventType) -> str:
    return json.dumps(schema_of(event_type), indent=2, sort_keys=True) + "\n"


# --- compatibility ------------------------------------------------------------------------------------


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return _resolve(root.get("$defs", {})[ref.removeprefix("#/$defs/")], root)
    return schema


def _types(schema: dict[str, Any], root: dict[str, Any]) -> set[str]:
    schema = _resolve(schema, root)
    if "anyOf" in schema:
        out: set[str] = set()
        for option in schema["anyOf"]:
            out |= _types(option, root)
        return out
    kind = schema.get("type")
    fmt = schema.get("format")
    if isinstance(kind, list):
        return {f"{k}:{fmt}" if fmt else k for k in kind}
    if kind is None:
        return {"any"}
    return {f"{kind}:{fmt}" if fmt else str(kind)}


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What in `new` breaks consumers written against `old`; empty when it is backward compatible."""
    return _compare(old, new, old, new, "")


def _compare(
    old: dict[str, Any], new: dict[str, Any], old_root: dict[str, Any], new_root: dict[str, Any], path: str
) -> list[str]:
    old = _resolve(old, old_root)
    new = _resolve(new, new_root)
    problems: list[str] = []
    where = path or "(root)"
    old_types, new_types = _types(old, old_root), _types(new, new_root)
    if "any" not in new_types and not old_types <= new_types:
        return [f"{where}: type changed from {sorted(old_types)} to {sorted(new_types)}"]
    if "enum" in old and "enum" in new and not set(old["enum"]) <= set(new["enum"]):
        problems.append(f"{where}: enum values removed: {sorted(set(old['enum']) - set(new['enum']))}")
    old_props = old.get("properties", {})
    new_props = new.get("properties", {})
    for name, old_prop in old_props.items():
        if name not in new_props:
            problems.append(f"{path}.{name}".lstrip(".") + ": removed")
            continue
        problems += _compare(old_prop, new_props[name], old_root, new_root, f"{path}.{name}".lstrip("."))
    newly_required = set(new.get("required", [])) - set(old.get("required", []))
    for name in sorted(newly_required):
        problems.append(f"{path}.{name}".lstrip(".") + ": became required")
    if "items" in old and "items" in new:
        problems += _compare(old["items"], new["items"], old_root, new_root, f"{path}[]")
    if "anyOf" in old and "anyOf" in new:
        # Optional fields are anyOf [X, null]: compare the non-null branches pairwise by type, so an
        # optional enum, list or object is checked inside as closely as a required one.
        for old_option in old["anyOf"]:
            old_kinds = _types(old_option, old_root)
            for new_option in new["anyOf"]:
                if old_kinds == _types(new_option, new_root) and old_kinds != {"null"}:
                    problems += _compare(old_option, new_option, old_root, new_root, path)
    return problems


def check_event_schemas(directory: Path = EVENTS_DIR) -> list[str]:
    """Problems between the registry and the committed schemas: missing, stale or breaking."""
    problems: list[str] = []
    for event_type in REGISTRY:
        path = schema_path(event_type, directory)
        if not path.exists():
            shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
            problems.append(f"{event_type.name}: no committed schema at {shown}; run `ceper contracts export`")
            continue
        committed = json.loads(path.read_text())
        current = schema_of(event_type)
        breaking = breaking_changes(committed, current)
        for change in breaking:
            problems.append(f"{event_type.name}: breaking change ({change}); publish it as v{event_type.version + 1} instead")
        if not breaking and committed != json.loads(render_schema(event_type)):
            problems.append(f"{event_type.name}: committed schema is out of date; run `ceper contracts export`")
    return problems


def export_event_schemas(directory: Path = EVENTS_DIR) -> list[Path]:
    """Writes the schemas; refuses (ValueError) to overwrite a committed schema with a breaking change."""
    directory.mkdir(parents=True, exist_ok=True)
    breaking: list[str] = []
    for event_type in REGISTRY:
        path = schema_path(event_type, directory)
        if path.exists():
            for change in breaking_changes(json.loads(path.read_text()), schema_of(event_type)):
                breaking.append(f"{event_type.name}: {change}")
    if breaking:
        raise ValueError("breaking changes to published events (make a new version instead):\n" + "\n".join(breaking))
    written = []
    for event_type in REGISTRY:
        path = schema_path(event_type, directory)
        path.write_text(render_schema(event_type))
        written.append(path)
    return written


# --- AsyncAPI -----------------------------------------------------------------------------------------


def asyncapi_document() -> dict[str, Any]:
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for service in SERVICES:
        channel_id = f"{service}Events"
        types = REGISTRY.of_service(service)
        channel_messages: dict[str, Any] = {}
        for event_type in types:
            message_id = event_type.name.replace(".", "_")
            schema = schema_of(event_type)
            defs = schema.pop("$defs", {})
            for def_name, definition in defs.items():
                schemas[def_name] = definition
            schema_text = json.dumps(schema).replace("#/$defs/", "#/components/schemas/")
            schemas[message_id] = json.loads(schema_text)
            messages[message_id] = {
                "name": event_type.name,
                "title": event_type.name,
                "summary": event_type.description,
                "contentType": "application/json",
                "bindings": {"kafka": {"key": {"type": "string", "description": f"`{event_type.key_field}`"}}},
                "headers": {"$ref": "#/components/schemas/CloudEventsHeaders"},
                "payload": {"$ref": f"#/components/schemas/{message_id}"},
            }
            channel_messages[message_id] = {"$ref": f"#/components/messages/{message_id}"}
        channels[channel_id] = {
            "address": topic_of(service),
            "title": topic_of(service),
            "description": f"Facts published by the {service} service, keyed by aggregate id so each aggregate's events stay in order.",
            "messages": channel_messages,
        }
        channels[f"{service}DeadLetters"] = {
            "address": dlq_topic_of(service),
            "description": f"Events the {service} service could not apply, with `ceper_dlq_*` headers naming the error and origin.",
        }
        channels[f"{service}Retries"] = {
            "address": retry_topic_of(service),
            "description": f"Dead letters of the {service} service sent back by `ceper dlq redrive`; only {service} reads it.",
        }
        if channel_messages:
            operations[f"publish{service.capitalize()}Events"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel_id}"},
                "summary": f"{service} publishes through its transactional outbox",
                "messages": [{"$ref": f"#/channels/{channel_id}/messages/{m}"} for m in channel_messages],
            }
    schemas["CloudEventsHeaders"] = {
        "type": "object",
        "description": "CloudEvents 1.0 Kafka protocol binding, binary mode",
        "required": ["ce_id", "ce_type", "ce_source", "ce_specversion", "ce_time", "ce_subject", "content-type"],
        "properties": {
            "ce_id": {"type": "string", "description": "Unique event id; consumers deduplicate on it"},
            "ce_type": {"type": "string", "examples": ["ceper.capacity.foundry_registered.v1"]},
            "ce_source": {"type": "string", "examples": ["/ceper/capacity"]},
            "ce_specversion": {"type": "string", "const": "1.0"},
            "ce_time": {"type": "string", "format": "date-time"},
            "ce_subject": {"type": "string", "description": "The aggregate id, equal to the Kafka key"},
            "ce_traceid": {"type": "string", "description": "Request or event chain that caused this event"},
            "content-type": {"type": "string", "const": "application/json"},
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Ceper Supply events",
            "version": "1.0.0",
            "description": "Events exchanged by the orders, capacity and quality services of Koperasi Batur Jaya's supply platform. Generated from the event registry by `ceper contracts export`.",
        },
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka", "description": "`ceper kafka start`"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render_asyncapi() -> str:
    return str(yaml.safe_dump(asyncapi_document(), sort_keys=False, allow_unicode=True, width=120))


def export_all() -> list[Path]:
    written = export_event_schemas()
    ASYNCAPI_PATH.write_text(render_asyncapi())
    return [*written, ASYNCAPI_PATH]
