"""Concurrent reservations never overbook a week: many requests at once, through two replicas of the service
sharing one database, with capacity falling while they run. Meant for PostgreSQL (row locks, real parallel
transactions); SQLite runs the same test with its single writer."""

from __future__ import annotations

import asyncio
import random
from contextlib import AsyncExitStack

from tests.integration.capacity_support import (
    COMPOSITE,
    foundry,
    ledger_matches_reservations,
    register,
    run_capacity,
    set_standard,
)

WEEK = "2027-W10"
CELL = ("IKM-001", COMPOSITE, WEEK)


async def test_concurrent_reservations_at_a_small_week_never_exceed_its_capacity(make_settings):
    settings = make_settings()
    rng = random.Random(48)
    asks = [rng.randint(1, 12) for _ in range(60)]  # about 390 units asked of 100
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(run_capacity(settings)) for _ in range(2)]
        await register(replicas[0], foundry("IKM-001"))
        await set_standard(replicas[0], "IKM-001", 100)

        async def reserve(i: int, quantity: int):
            body = {"foundry_code": "IKM-001", "product_family": COMPOSITE, "week": WEEK, "quantity": quantity}
            return quantity, await replicas[i % 2].http.post("/v1/reservations", json=body)

        answers = await asyncio.gather(*(reserve(i, q) for i, q in enumerate(asks)))
        granted = [q for q, r in answers if r.status_code == 201]
        refused = [(q, r) for q, r in answers if r.status_code != 201]
        assert all(r.status_code == 409 and r.json()["errors"][0]["type"] == "insufficient_capacity" for _, r in refused), [
            r.text for _, r in refused if r.status_code != 409
        ]
        assert sum(granted) <= 100
        assert await ledger_matches_reservations(replicas[0]) == {CELL: sum(granted)}
        # Free capacity only shrank during the storm, so each refusal was right: even now its quantity does not fit.
        free = 100 - sum(granted)
        assert refused and all(q > free for q, _ in refused)
        week = (
            await replicas[1].http.get("/v1/availability", params={"product_family": COMPOSITE, "from": WEEK, "to": WEEK})
        ).json()
        [offer] = week["foundries"]
        assert (offer["capacity"], offer["reserved"], offer["free"]) == ([100], [sum(granted)], [free])


async def test_reservations_racing_a_capacity_drop_end_within_the_new_capacity(make_settings):
    settings = make_settings()
    rng = random.Random(7)
    async with AsyncExitStack() as stack:
        replicas = [await stack.enter_async_context(run_capacity(settings)) for _ in range(2)]
        await register(replicas[0], foundry("IKM-001"))
        await set_standard(replicas[0], "IKM-001", 400)

        async def reserve_and_confirm(i: int) -> None:
            http = replicas[i % 2].http
            body = {"foundry_code": "IKM-001", "product_family": COMPOSITE, "week": WEEK, "quantity": rng.randint(5, 40),
                    "due_date": f"2027-04-{rng.randint(1, 30):02d}"}  # fmt: skip
            held = await http.post("/v1/reservations", json=body)
            assert held.status_code in (201, 409), held.text
            if held.status_code == 201 and i % 3:
                confirmed = await http.post(f"/v1/reservations/{held.json()['id']}/confirm")
                assert confirmed.status_code in (200, 409), confirmed.text  # 409: revoked meanwhile
            if held.status_code == 201 and i % 5 == 0:
                assert (await http.post(f"/v1/reservations/{held.json()['id']}/release")).status_code in (200, 409)

        async def drop(units: int, reason: str, first: str, last: str) -> None:
            await asyncio.sleep(0.01)
            body = {
                "kind": "exception",
                "product_family": COMPOSITE,
                "weekly_units": units,
                "from_date": first,
                "to_date": last,
                "reason": reason,
            }
            changed = await replicas[1].http.post("/v1/foundries/IKM-001/capacity-changes", json=body)
            assert changed.status_code == 201, changed.text

        await asyncio.gather(
            *(reserve_and_confirm(i) for i in range(60)),
            drop(150, "press_breakdown", "2027-03-08", "2027-03-10"),  # Monday to Wednesday of W10: 400 → 275 a week
            drop(0, "power_cut", "2027-03-12", "2027-03-13"),  # Friday and Saturday: 275 → 141
        )
        week = (
            await replicas[0].http.get("/v1/availability", params={"product_family": COMPOSITE, "from": WEEK, "to": WEEK})
        ).json()
        [offer] = week["foundries"]
        assert offer["capacity"] == [141]
        reserved = (await ledger_matches_reservations(replicas[0])).get(CELL, 0)
        assert offer["reserved"] == [reserved] and reserved <= 141
