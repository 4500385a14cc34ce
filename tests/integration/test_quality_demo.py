"""The quality demo for `ceper seed`: certificates and a lot history for the cooperative's members, added once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import date

import httpx
import pytest

from ceper.demo import demo_foundries
from ceper.demo.quality import seed_quality
from tests.integration.quality_helpers import LoopTransport, outbox_drained, run_quality
from tests.support import run_services


@pytest.mark.parametrize("backend", ["sqlite"])  # the same requests as on PostgreSQL; one backend keeps it quick
async def test_demo_grants_certificates_and_lot_history_once(make_settings):
    settings = make_settings()
    members = demo_foundries(1995)
    async with run_services(settings, "capacity") as svc, run_quality(settings) as quality:
        for member in members:
            assert (await svc["capacity"].http.post("/v1/foundries", json=member.__dict__)).status_code == 201
        transport = LoopTransport(asyncio.get_running_loop(), {"quality": quality})

        def seed() -> str:
            with httpx.Client(transport=transport, base_url="http://quality") as client:
                return seed_quality(client, "http://quality", members, 1995, date.today())

        first = await asyncio.to_thread(seed)
        assert first.startswith("Quality demo: ") and "(6 lapsing within 30 days, 3 lapsed)" in first
        again = await asyncio.to_thread(seed)
        assert (
            again
            == "Quality demo: 0 certificates (0 lapsing within 30 days, 0 lapsed) and 0 lots, 0 tested (0 failed), added (existing ones kept)."
        )

        http = quality.http
        states = Counter(c["state"] for c in (await http.get("/v1/certificates")).json())
        assert states["expiring"] >= 6 and states["expired"] >= 3 and states["valid"] > 150
        statuses = Counter(q["status"] for q in (await http.get("/v1/quality-status")).json())
        assert statuses["watch"] == 1 and statuses["suspended"] == 0 and statuses["good"] == len(members) - 1
        lots = (await http.get("/v1/lots", params={"limit": 500})).json()
        assert lots["total"] > 80 and all(lot["status"] != "registered" for lot in lots["items"])
        outcomes = Counter(lot["status"] for lot in lots["items"])
        assert 0 < outcomes["failed"] < outcomes["passed"] / 5
        eligible = (await http.get("/v1/eligibility", params={"item": "BB-COMP-K"})).json()
        assert 15 < eligible["eligible_count"] < 32
        await outbox_drained(quality)
