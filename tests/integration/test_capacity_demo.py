"""The demo cooperative's capacity (`ceper.demo.capacity`): realistic, deterministic, and loaded once."""

from __future__ import annotations

import asyncio
from datetime import date

import httpx

from ceper.demo import demo_foundries
from ceper.demo.capacity import seed_capacity
from tests.integration.capacity_support import CAST_IRON, COMPOSITE, LoopTransport, run_capacity
from tests.support import RunningService

TODAY = date(2026, 11, 24)
MEMBERS = demo_foundries(1995)[:40]


async def seed(capacity: RunningService) -> str:
    loop = asyncio.get_running_loop()

    def run() -> str:
        with httpx.Client(transport=LoopTransport(loop, capacity), base_url="http://capacity") as client:
            return seed_capacity(client, "http://capacity", MEMBERS, 1995, today=TODAY)

    return await asyncio.to_thread(run)


async def calendars(capacity: RunningService) -> list[tuple]:
    drawn = []
    for member in MEMBERS:
        history = (await capacity.http.get(f"/v1/foundries/{member.code}/capacity-changes")).json()["items"]
        drawn += [
            (
                c["foundry_code"],
                c["product_family"],
                c["kind"],
                c["reason"],
                c["weekly_units"],
                c["from_week"],
                c["from_date"],
                c["to_date"],
            )
            for c in history
        ]
    return drawn


async def test_the_demo_loads_members_capacities_and_lebaran_closures_once(make_settings):
    async with run_capacity(make_settings()) as capacity:
        # One member is already registered without details, as `ceper seed` registers them.
        first = MEMBERS[0]
        body = {"code": first.code, "name": first.name, "village": first.village, "product_families": first.product_families}
        assert (await capacity.http.post("/v1/foundries", json=body)).status_code == 201

        summary = await seed(capacity)
        assert summary.startswith("Capacity demo: 39 member foundries registered, 1 completed with details,\n")
        loaded = await calendars(capacity)
        assert await seed(capacity) == (
            "Capacity demo: 0 member foundries registered, 0 completed with details,\n0 capacity changes recorded (existing ones kept)."
        )
        assert await calendars(capacity) == loaded

        listed = (await capacity.http.get("/v1/foundries", params={"limit": 100})).json()["items"]
        assert len(listed) == 40 and all(f["owner"] and f["npwp"] and f["furnaces"] for f in listed)
        composite = {f["code"]: f["presses"] for f in listed if COMPOSITE in f["product_families"]}
        assert composite and all(presses >= 1 for presses in composite.values())
        assert all(f["presses"] == 0 for f in listed if f["code"] not in composite)
        assert {c[3] for c in loaded} >= {"declared", "lebaran_closure"}

        # Lebaran 2027 (10 March) falls in W10: every member is closed that week and open again a month later.
        for family in (COMPOSITE, CAST_IRON):
            weeks = (
                await capacity.http.get(
                    "/v1/availability", params={"product_family": family, "from": "2027-W10", "to": "2027-W14"}
                )
            ).json()
            assert weeks["foundries"] and all(f["capacity"][0] == 0 and f["capacity"][4] > 0 for f in weeks["foundries"])
            assert all(f["capacity"][4] % 10 == 0 or family == COMPOSITE for f in weeks["foundries"])
            if family == COMPOSITE:
                # presses × 40–52 blocks a press-shift × 1–3 shifts × 6 days (half of it in a week with a breakdown)
                for offer in weeks["foundries"]:
                    presses = composite[offer["foundry_code"]]
                    assert presses * 40 * 6 // 2 <= offer["capacity"][4] <= presses * 52 * 3 * 6

    async with run_capacity(make_settings()) as other:
        await seed(other)
        assert await calendars(other) == loaded, "the same seed draws the same demo"
