"""Findable flows: docs/architecture.md lists every event with its producer, consumers and tests, as the code says."""

from __future__ import annotations

from pathlib import Path

from ceper.flows import BEGIN, END, Flow, check_flows, committed_flows, event_flows, export_flows, render_flows
from shared.events import REGISTRY


def flow_of(name: str) -> Flow:
    [flow] = [f for f in event_flows() if f.event_type.name == name]
    return flow


def test_the_committed_table_of_event_flows_is_up_to_date() -> None:
    assert committed_flows() == render_flows(), "run `ceper contracts export`"
    assert check_flows() == []


def test_every_registered_event_has_a_row_and_a_producer_found_in_its_service() -> None:
    flows = event_flows()
    assert [f.event_type.name for f in flows] == [t.name for t in REGISTRY]
    assert [f.event_type.name for f in flows if not f.producers] == []
    for flow in flows:
        assert f"`{flow.event_type.name}`" in render_flows()


def test_a_flow_names_the_producing_function_the_consumers_handlers_and_the_tests() -> None:
    lot_failed = flow_of("ceper.quality.lot_failed.v1")
    [producer] = lot_failed.producers  # built with LotFailed.model_validate, in quality's domain
    assert producer.startswith("domain.") and producer.endswith(".decide_lot")
    [orders] = [c for c in lot_failed.consumers if c.service == "orders"]
    assert orders.projection == ("projections.on_lot_event", ("lot_projection",))
    assert orders.reactions == ("handlers.on_lot_failed",)
    assert "unit/test_quality_evaluation.py" in lot_failed.tests

    planned = flow_of("ceper.orders.allocation_planned.v1")
    assert [(c.service, c.projection, c.reactions) for c in planned.consumers] == [
        ("capacity", None, ("handlers.on_allocation_planned",))
    ]


def test_a_stale_table_is_found_and_export_rewrites_only_the_table(tmp_path: Path) -> None:
    page = tmp_path / "architecture.md"
    page.write_text(f"# Architecture\n\nbefore\n\n{BEGIN}\n| stale |\n{END}\n\nafter\n")
    assert check_flows(page) == [f"the table of event flows in {page} is out of date; run `ceper contracts export`"]
    export_flows(page)
    assert page.read_text() == f"# Architecture\n\nbefore\n\n{render_flows()}\n\nafter\n"
    assert check_flows(page) == []
