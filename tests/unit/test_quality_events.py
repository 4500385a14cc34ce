"""The quality events orders and capacity are built against: names, keys and fields stay exactly as agreed."""

from __future__ import annotations

from shared.events import REGISTRY

CONTRACT = {
    "certificate_granted": (
        "foundry_code",
        {
            "certificate_id",
            "foundry_code",
            "kind",
            "number",
            "issuer",
            "valid_from",
            "valid_until",
            "tkdn_percent",
            "certified_workers",
            "items",
            "granted_at",
        },
    ),
    "certificate_revoked": ("foundry_code", {"certificate_id", "foundry_code", "kind", "reason", "revoked_at"}),
    "certification_expiring": ("foundry_code", {"certificate_id", "foundry_code", "kind", "valid_until", "days_left"}),
    "certification_expired": ("foundry_code", {"certificate_id", "foundry_code", "kind", "valid_until"}),
    "lot_registered": (
        "lot_code",
        {"lot_code", "foundry_code", "item_code", "quantity", "order_id", "allocation_id", "spec_version", "registered_at"},
    ),
    "lot_passed": (
        "lot_code",
        {
            "lot_code",
            "foundry_code",
            "item_code",
            "quantity",
            "order_id",
            "allocation_id",
            "report_number",
            "laboratory",
            "decided_at",
        },
    ),
    "lot_failed": (
        "lot_code",
        {
            "lot_code",
            "foundry_code",
            "item_code",
            "quantity",
            "order_id",
            "allocation_id",
            "report_number",
            "laboratory",
            "decided_at",
            "reasons",
        },
    ),
    "foundry_quality_status_changed": (
        "foundry_code",
        {"foundry_code", "status", "previous_status", "pass_rate", "overridden", "reason", "changed_at"},
    ),
    "item_published": (
        "item_code",
        {
            "item_code",
            "version",
            "name_id",
            "name_en",
            "product_family",
            "unit",
            "min_lot",
            "required_certificates",
            "min_tkdn_percent",
            "retired",
            "published_at",
        },
    ),
}


def test_quality_publishes_exactly_the_agreed_events_on_its_topic():
    types = REGISTRY.of_service("quality")
    assert {t.name for t in types} == {f"ceper.quality.{name}.v1" for name in CONTRACT}
    for event_type in types:
        key, fields = CONTRACT[event_type.event]
        assert event_type.topic == "ceper.quality.v1"
        assert event_type.key_field == key
        assert set(event_type.model.model_fields) == fields


def test_enumerations_and_reasons_are_as_agreed():
    schema = REGISTRY["ceper.quality.lot_failed.v1"].model.model_json_schema()
    reason = schema["$defs"]["LotFailureReason"]
    assert set(reason["properties"]) == {"parameter", "rule", "observed", "message"}
    granted = REGISTRY["ceper.quality.certificate_granted.v1"].model.model_json_schema()
    assert granted["$defs"]["CertificateKind"]["enum"] == ["ISO9001", "SNI", "TKDN", "SKKNI"]
    changed = REGISTRY["ceper.quality.foundry_quality_status_changed.v1"].model.model_json_schema()
    assert changed["$defs"]["QualityStatus"]["enum"] == ["good", "watch", "suspended"]
    optional = {n for n, f in REGISTRY["ceper.quality.lot_registered.v1"].model.model_fields.items() if not f.is_required()}
    assert optional == {"order_id", "allocation_id"}
