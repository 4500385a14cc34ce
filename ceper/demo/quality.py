"""Demo data of the quality service for `ceper seed`: members' certificates and a lot history with results.

Deterministic for a seed, and safe to run again: everything is drawn first, then posted, and what exists
already (409) is left as it is.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Protocol

import httpx

COMPOSITE = "BRAKE_BLOCK_COMPOSITE"
CAST_IRON = "BRAKE_BLOCK_CAST_IRON"
LABORATORIES = ("B4T Bandung", "Lab QA Koperasi Batur Jaya")
ISO_ISSUERS = ("PT Sucofindo (LSSM)", "PT Mutu Agung Lestari", "TÜV NORD Indonesia")


class Member(Protocol):
    """A member foundry as `ceper.demo.demo_foundries` describes it."""

    code: str
    product_families: list[str]


@dataclass
class _LotPlan:
    lot_code: str
    foundry_code: str
    item_code: str
    quantity: int
    failing: bool


@dataclass
class _Plan:
    certificates: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # body, and "expiring"/"lapsed"/""
    lots: list[_LotPlan] = field(default_factory=list)


def _validity(today: date, years: int, days_left: int) -> tuple[date, date]:
    until = today + timedelta(days=days_left)
    start = until - timedelta(days=365 * years - 1)
    return start, until


def _draw(members: Sequence[Member], seed: int, today: date) -> _Plan:
    rng = random.Random(seed * 7919 + 2859)
    plan = _Plan()
    holders: list[Member] = []
    for member in sorted(members, key=lambda m: m.code):
        families = set(member.product_families)
        if COMPOSITE in families:
            certified = rng.random() < 0.85
        elif CAST_IRON in families:
            certified = rng.random() < 0.5
        else:
            certified = False
        if certified:
            holders.append(member)
        elif rng.random() < 0.2:  # some general foundries hold ISO 9001 for their machine-parts buyers
            start, until = _validity(today, 3, rng.randint(60, 900))
            body = {
                "foundry_code": member.code,
                "kind": "ISO9001",
                "number": f"QMS-{member.code.removeprefix('IKM-')}-{start.year}",
                "issuer": rng.choice(ISO_ISSUERS),
                "valid_from": start.isoformat(),
                "valid_until": until.isoformat(),
            }
            plan.certificates.append((body, ""))
    # Most certificates run for a while yet; a few holders have one lapsing this month, a few let one lapse.
    fates = rng.sample(range(len(holders)), k=min(len(holders), 9))
    fate_of = {holders[i].code: ("expiring" if n < 6 else "lapsed") for n, i in enumerate(fates)}
    for member in holders:
        families = set(member.product_families)
        number = member.code.removeprefix("IKM-")
        items = (["BB-COMP-K", "BB-COMP-LL"] if COMPOSITE in families else []) + (["BB-CI"] if CAST_IRON in families else [])
        touched = rng.choice(["SNI", "ISO9001", "TKDN"])
        for kind, years in (("SNI", 4), ("ISO9001", 3), ("TKDN", 5), ("SKKNI", 5)):
            days_left = rng.randint(60, 365 * years - 30)
            flag = fate_of.get(member.code, "") if kind == touched else ""
            if flag == "expiring":
                days_left = rng.randint(3, 29)
            elif flag == "lapsed":
                days_left = -rng.randint(5, 60)
            start, until = _validity(today, years, days_left)
            body: dict[str, Any] = {
                "foundry_code": member.code,
                "kind": kind,
                "valid_from": start.isoformat(),
                "valid_until": until.isoformat(),
            }
            if kind == "SNI":
                body |= {"number": f"SPPT-SNI/B4T/{number}/{start.year}", "issuer": "LSPro B4T", "items": items}
            elif kind == "ISO9001":
                body |= {"number": f"QMS-{number}-{start.year}", "issuer": rng.choice(ISO_ISSUERS)}
            elif kind == "TKDN":
                low = 30 if COMPOSITE in families else 18  # cast-iron-only members sometimes fall below 25 %
                body |= {
                    "number": f"TKDN/{number}/{start.year}",
                    "issuer": "Kementerian Perindustrian (SIINas)",
                    "tkdn_percent": round(rng.uniform(low, 60), 2),
                }
            else:
                body |= {
                    "number": f"SKKNI-LSP/{number}/{start.year}",
                    "issuer": "LSP Logam Mesin (BNSP)",
                    "certified_workers": rng.randint(5, 40),
                }
            plan.certificates.append((body, flag))

    composite_holders = [m for m in holders if COMPOSITE in m.product_families]
    drifting = rng.choice(composite_holders).code if composite_holders else None
    for member in holders:
        composite = COMPOSITE in member.product_families
        if not composite and rng.random() < 0.6:
            continue  # not every cast-iron member had a tested lot yet
        lots = 5 if member.code == drifting else rng.randint(2, 4)
        failed_once = False
        for n in range(1, lots + 1):
            if composite:
                item, suffix = ("BB-COMP-LL", "LL") if rng.random() < 0.2 else ("BB-COMP-K", "K")
            else:
                item, suffix = "BB-CI", "CI"
            quantity = rng.choice([120, 150, 200, 240, 280])
            # The drifting foundry fails its three most recent lots: enough to move it to `watch`, not to suspend it.
            # Others fail at most once, which the status prior absorbs.
            if member.code == drifting:
                failing = n > 2
            else:
                failing = rng.random() < 0.06 and not failed_once
                failed_once = failed_once or failing
            plan.lots.append(_LotPlan(f"{member.code}-{suffix}-{n:04d}", member.code, item, quantity, failing))
    return plan


def _measure(parameter: dict[str, Any], rng: random.Random, off: bool) -> Any:
    """A plausible lab value: inside the acceptance rule, or just outside it when `off`."""
    rule = parameter["rule"]
    if rule == "pass_fail":
        return "fail" if off else "pass"
    if rule == "target":
        target, tolerance = parameter["target"], parameter["tolerance"]
        value = (
            target + rng.choice([-1, 1]) * tolerance * rng.uniform(1.15, 1.6)
            if off
            else target + tolerance * rng.uniform(-0.6, 0.6)
        )
    elif rule == "range":
        low, high = parameter["minimum"], parameter["maximum"]
        span = high - low
        value = (high + span * rng.uniform(0.05, 0.2)) if off else low + span * rng.uniform(0.15, 0.85)
    elif rule == "minimum":
        value = parameter["minimum"] * (rng.uniform(0.7, 0.9) if off else rng.uniform(1.15, 1.8))
    else:
        value = parameter["maximum"] * (rng.uniform(1.1, 1.3) if off else rng.uniform(0.5, 0.9))
    if parameter.get("possible_min") is not None:
        value = max(value, parameter["possible_min"])
    return round(value, 3)


def _samples(spec: dict[str, Any], sample_size: int, acceptance: int, failing: bool, rng: random.Random) -> list[dict[str, Any]]:
    parameters = spec["parameters"]
    # A failing lot has one more bad sample than the plan accepts; a passing lot now and then has one within it.
    bad = acceptance + 1 if failing else (1 if acceptance >= 1 and rng.random() < 0.3 else 0)
    bad_rows = set(rng.sample(range(sample_size), k=min(bad, sample_size)))
    culprits = rng.sample(parameters, k=min(2, len(parameters)))
    rows = []
    for i in range(sample_size):
        broken = rng.choice(culprits)["code"] if i in bad_rows else None
        rows.append({p["code"]: _measure(p, rng, p["code"] == broken) for p in parameters})
    return rows


def _wait_for_foundries(client: httpx.Client, quality_url: str, codes: set[str], wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        response = client.get(f"{quality_url}/v1/foundries")
        response.raise_for_status()
        missing = codes - {f["code"] for f in response.json()}
        if not missing:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"quality has not seen {len(missing)} member foundries (e.g. {sorted(missing)[0]}) after {wait_s:.0f}s: "
                "are capacity and the broker running?"
            )
        time.sleep(0.5)


def _post(client: httpx.Client, url: str, body: dict[str, Any], what: str) -> httpx.Response | None:
    """The created resource's response, or None when it existed already."""
    response = client.post(url, json=body)
    if response.status_code == 201:
        return response
    if response.status_code == 409:
        return None
    raise RuntimeError(f"seeding {what} failed: {response.status_code} {response.text}")


def seed_quality(
    client: httpx.Client, quality_url: str, foundries: Sequence[Member], seed: int, today: date, *, wait_s: float = 60.0
) -> str:
    """Grants the members' certificates and records a lot history; returns a one-line summary of what was added."""
    plan = _draw(foundries, seed, today)
    _wait_for_foundries(client, quality_url, {f.code for f in foundries}, wait_s)
    granted: dict[str, int] = {"": 0, "expiring": 0, "lapsed": 0}
    for body, flag in plan.certificates:
        if _post(client, f"{quality_url}/v1/certificates", body, f"{body['kind']} certificate of {body['foundry_code']}"):
            granted[flag] += 1
    registered = decided = failed = 0
    for i, lot in enumerate(plan.lots):
        body = {"lot_code": lot.lot_code, "foundry_code": lot.foundry_code, "item_code": lot.item_code, "quantity": lot.quantity}
        created = _post(client, f"{quality_url}/v1/lots", body, f"lot {lot.lot_code}")
        registered += created is not None
        outcome = decide_lot(client, quality_url, lot.lot_code, lot.failing, seed, today, LABORATORIES[i % len(LABORATORIES)])
        if outcome is not None:
            decided += 1
            failed += outcome == "failed"
    return (
        f"Quality demo: {sum(granted.values())} certificates ({granted['expiring']} lapsing within 30 days, {granted['lapsed']} lapsed) and "
        f"{registered} lots, {decided} tested ({failed} failed), added (existing ones kept)."
    )


def decide_lot(
    client: httpx.Client, quality_url: str, lot_code: str, failing: bool, seed: int, today: date, laboratory: str
) -> str | None:
    """Posts a laboratory result for a registered lot, made to pass or fail its sampling plan; returns the
    outcome, or None when the lot was decided already."""
    current = client.get(f"{quality_url}/v1/lots/{lot_code}").raise_for_status().json()
    if current["status"] != "registered":
        return None
    sampling = current["sampling_plan"]
    spec = (
        client.get(f"{quality_url}/v1/specifications/{current['item_code']}", params={"version": current["spec_version"]})
        .raise_for_status()
        .json()
    )
    result = lab_result(spec, sampling, lot_code, failing, seed, today, laboratory)
    answered = _post(client, f"{quality_url}/v1/lots/{lot_code}/results", result, f"result of lot {lot_code}")
    return answered.json()["status"] if answered else None


def lab_result(
    spec: dict[str, Any], sampling: dict[str, Any], lot_code: str, failing: bool, seed: int, today: date, laboratory: str
) -> dict[str, Any]:
    """The body of a laboratory report for a lot (its specification and sampling plan as quality shows them) that
    passes, or fails by one bad sample more than the plan accepts. The same seed and lot give the same report."""
    rng = random.Random(f"{seed}:{lot_code}")
    return {
        "report_number": f"LHU/{today.year}/{lot_code}",
        "laboratory": laboratory,
        "samples": _samples(spec, sampling["sample_size"], sampling["acceptance_number"], failing, rng),
    }
