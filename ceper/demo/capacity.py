"""Demo data of the capacity service for `ceper seed`: members' details and equipment, their standard weekly
capacity per product family, Lebaran closures, and a few breakdowns.

Deterministic for a seed (and the year it runs in), and safe to run again: everything is drawn first, then
posted; a foundry already registered only gets the details it lacks, and a capacity change already recorded
answers 200 and changes nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

import httpx

from services.capacity.domain import BLOCKS_PER_PRESS_SHIFT, WORKING_DAYS, ProductFamily
from shared.weeks import iso_week, lebaran, week_start

COMPOSITE = ProductFamily.BRAKE_BLOCK_COMPOSITE.value
CAST_IRON = ProductFamily.BRAKE_BLOCK_CAST_IRON.value
CAST_IRON_BLOCK_KG = 11.5
# Units a week of the other families, low and high: parts differ too much in size for an equipment formula.
PART_RANGES = {
    "PUMP_PARTS": (80, 600),
    "MACHINE_PARTS": (40, 400),
    "SHIP_PARTS": (10, 120),
    "AUTOMOTIVE_PARTS": (200, 2500),
    "RAILWAY_PARTS": (40, 300),
    "HOUSEHOLD_GOODS": (300, 3000),
}
GIVEN_NAMES = (
    "Agus", "Bambang", "Budi", "Darmadi", "Endang", "Heru", "Joko", "Mulyono", "Purwanto", "Riyanto", "Siti", "Slamet",
    "Sri", "Sugiyono", "Suparno", "Sutrisno", "Suyatno", "Wahyudi", "Wiyono", "Yuliani", "Hartono", "Tri", "Eko", "Dwi",
)  # fmt: skip
FAMILY_NAMES = (
    "Purwanto", "Rahayu", "Wahyuni", "Santoso", "Susanto", "Prasetyo", "Nugroho", "Setiawan", "Hidayat", "Kurniawan",
    "Widodo", "Utomo", "Saputro", "Lestari", "Handoko", "Wibowo",
)  # fmt: skip
KPP_KLATEN = "525"  # the tax office code in old 15-digit NPWPs of Klaten


class Member(Protocol):
    """A member foundry as `ceper.demo.demo_foundries` describes it."""

    code: str
    name: str
    village: str
    product_families: list[str]


@dataclass
class _Profile:
    code: str
    entry: dict[str, Any]  # the register entry with owner, NPWP, furnaces, presses
    weekly_units: dict[str, int]  # per product family, any the foundry might make
    closure_weeks: int
    closure_starts_early: bool
    incidents: list[dict[str, Any]] = field(default_factory=list)  # exceptions besides Lebaran, without family


def _owner(rng: random.Random) -> str:
    return f"{rng.choice(GIVEN_NAMES)} {rng.choice(FAMILY_NAMES)}"


def _npwp(rng: random.Random, company: bool) -> str:
    if company and rng.random() < 0.3:  # older registrations still quote the 15-digit form
        d = [rng.randint(0, 9) for _ in range(9)]
        return f"0{d[0]}.{d[1]}{d[2]}{d[3]}.{d[4]}{d[5]}{d[6]}.{d[7]}-{KPP_KLATEN}.000"
    if company:
        return "0" + "".join(str(rng.randint(0, 9)) for _ in range(15))
    return "3310" + "".join(str(rng.randint(0, 9)) for _ in range(12))  # a NIK from Klaten regency


def _furnaces(rng: random.Random) -> list[dict[str, Any]]:
    furnaces = []
    for _ in range(2 if rng.random() < 0.25 else 1):
        kind = rng.choices(["cupola", "induction", "tukik", "besalen"], weights=[55, 30, 10, 5])[0]
        low, high = {"cupola": (2.0, 6.0), "induction": (0.5, 3.0), "tukik": (0.3, 1.0), "besalen": (0.2, 0.6)}[kind]
        furnaces.append({"kind": kind, "tonnes_per_day": round(rng.uniform(low, high), 1)})
    return furnaces


def _draw(members: Sequence[Member], seed: int, year: int) -> list[_Profile]:
    rng = random.Random(seed * 7907 + 4421)
    profiles = []
    for member in sorted(members, key=lambda m: m.code):
        company = member.name.split(" ")[0] in ("PT", "CV")
        furnaces = _furnaces(rng)
        melt = sum(f["tonnes_per_day"] for f in furnaces)
        presses = rng.choices([1, 2, 3, 4], weights=[45, 35, 15, 5])[0] if COMPOSITE in member.product_families else 0
        units: dict[str, int] = {}
        if presses:
            shifts = rng.choices([1, 2, 3], weights=[60, 35, 5])[0]
            per_press_shift = rng.randint(BLOCKS_PER_PRESS_SHIFT - 8, BLOCKS_PER_PRESS_SHIFT + 4)
            units[COMPOSITE] = presses * per_press_shift * shifts * WORKING_DAYS
        share = rng.uniform(0.15, 0.4)  # of the melt poured as brake blocks when an order runs
        units[CAST_IRON] = max(50, round(melt * share * 1000 / CAST_IRON_BLOCK_KG * WORKING_DAYS / 10) * 10)
        for family, (low, high) in PART_RANGES.items():
            units[family] = round(rng.randint(low, high) / 10) * 10 or 10
        incidents = []
        if presses and rng.random() < 0.2:
            start = week_start(f"{year + 1}-W{rng.randint(14, 40):02d}") + timedelta(days=rng.randint(0, 4))
            incidents.append(
                {"family": COMPOSITE, "share": 0.5, "days": rng.randint(7, 20), "start": start, "reason": "press_breakdown"}
            )
        elif rng.random() < 0.06:  # one incident per member, so no two exceptions of it overlap
            start = week_start(f"{year + 1}-W{rng.randint(14, 40):02d}") + timedelta(days=rng.randint(0, 4))
            incidents.append({"family": None, "share": 0.0, "days": rng.randint(1, 2), "start": start, "reason": "power_cut"})
        profiles.append(
            _Profile(
                code=member.code,
                entry={
                    "code": member.code,
                    "name": member.name,
                    "village": member.village,
                    "product_families": list(member.product_families),
                    "owner": _owner(rng),
                    "npwp": _npwp(rng, company),
                    "furnaces": furnaces,
                    "presses": presses,
                },
                weekly_units=units,
                closure_weeks=2 if rng.random() < 0.4 else 1,
                closure_starts_early=rng.random() < 0.3,
                incidents=incidents,
            )
        )
    return profiles


def standard_weekly_units(members: Sequence[Member], seed: int, year: int) -> dict[str, dict[str, int]]:
    """Each member's standard weekly units of the product families it makes, as the demo declares them."""
    families = {member.code: set(member.product_families) for member in members}
    return {
        profile.code: {family: units for family, units in profile.weekly_units.items() if family in families[profile.code]}
        for profile in _draw(members, seed, year)
    }


def _changes(profile: _Profile, families: Sequence[str], year: int) -> list[dict[str, Any]]:
    changes: list[dict[str, Any]] = []
    for family in families:
        if family not in profile.weekly_units:
            continue
        changes.append(
            {
                "kind": "standard",
                "product_family": family,
                "weekly_units": profile.weekly_units[family],
                "from_week": f"{year}-W01",
                "reason": "declared",
            }
        )
        for lebaran_year in (year, year + 1):
            idul_fitri = lebaran(lebaran_year)
            # Foundries close around Idul Fitri for one or two weeks: its own week always, a second one before or after.
            early = profile.closure_weeks == 2 and profile.closure_starts_early
            monday = week_start(iso_week(idul_fitri)) - timedelta(weeks=1 if early else 0)
            changes.append(
                {
                    "kind": "exception",
                    "product_family": family,
                    "weekly_units": 0,
                    "from_date": monday.isoformat(),
                    "to_date": (monday + timedelta(weeks=profile.closure_weeks, days=-1)).isoformat(),
                    "reason": "lebaran_closure",
                    "note": f"Lebaran {lebaran_year}",
                }
            )
        for incident in profile.incidents:
            if incident["family"] not in (None, family):
                continue
            changes.append(
                {
                    "kind": "exception",
                    "product_family": family,
                    "weekly_units": int(profile.weekly_units[family] * incident["share"]),
                    "from_date": incident["start"].isoformat(),
                    "to_date": (incident["start"] + timedelta(days=incident["days"] - 1)).isoformat(),
                    "reason": incident["reason"],
                }
            )
    return changes


def _check(response: httpx.Response, what: str, *ok: int) -> httpx.Response:
    if response.status_code not in ok:
        raise RuntimeError(f"seeding {what} failed: {response.status_code} {response.text}")
    return response


def seed_capacity(
    client: httpx.Client, capacity_url: str, foundries: Sequence[Member], seed: int, *, today: date | None = None
) -> str:
    """Registers missing members (or adds the details they lack) and loads their capacity calendars."""
    year = (today or date.today()).isocalendar().year
    registered = completed = recorded = 0
    for profile in _draw(foundries, seed, year):
        found = _check(client.get(f"{capacity_url}/v1/foundries/{profile.code}"), profile.code, 200, 404)
        if found.status_code == 404:
            _check(client.post(f"{capacity_url}/v1/foundries", json=profile.entry), profile.code, 201)
            registered += 1
            current = profile.entry
        else:
            current = found.json()
            missing = {k: profile.entry[k] for k in ("owner", "npwp", "furnaces", "presses") if current.get(k) is None}
            if missing:
                _check(client.patch(f"{capacity_url}/v1/foundries/{profile.code}", json=missing), profile.code, 200)
                completed += 1
        for change in _changes(profile, current["product_families"], year):
            response = client.post(f"{capacity_url}/v1/foundries/{profile.code}/capacity-changes", json=change)
            if _check(response, f"capacity of {profile.code}", 200, 201).status_code == 201:
                recorded += 1
    # Two short lines: consoles wrap long ones, and people scan for the counts.
    return (
        f"Capacity demo: {registered} member foundries registered, {completed} completed with details,\n"
        f"{recorded} capacity changes recorded (existing ones kept)."
    )
