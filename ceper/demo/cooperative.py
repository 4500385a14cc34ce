"""A seeded cooperative equipped for composite brake blocks, as the chaos run and the reaction bench register it:
the demo cooperative's first members, each with the presses, weekly units, TKDN and SNI certificate drawn for it.

Deterministic for a given seed and draw: the same members with the same figures every time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import demo_foundries

COMPOSITE = "BRAKE_BLOCK_COMPOSITE"
# Drawn from this many, whatever the count: a larger cooperative only adds members after the same first ones.
POOL = 170


@dataclass(frozen=True)
class Member:
    code: str
    name: str
    village: str
    product_families: list[str]
    presses: int
    weekly_units: int
    tkdn_percent: float
    sni: bool  # holds the SNI product certificate for composite blocks: only then may it make them for KAI


def composite_cooperative(
    count: int, seed: int, draw: random.Random, *, weekly_units: range = range(300, 720, 10)
) -> list[Member]:
    """The first `count` members (at most 170) of the demo cooperative of `seed`, each equipped for composite brake
    blocks, their figures taken from `draw`; one member in ten is still waiting for its SNI audit."""
    if not 0 <= count <= POOL:
        raise ValueError(f"a cooperative of 0 to {POOL} members, not {count}")
    return [
        Member(
            code=f.code,
            name=f.name,
            village=f.village,
            product_families=sorted(set(f.product_families) | {COMPOSITE}),
            presses=draw.choice([1, 2, 2, 3, 4]),
            weekly_units=draw.randrange(weekly_units.start, weekly_units.stop, weekly_units.step),
            tkdn_percent=round(draw.uniform(30.0, 60.0), 1),
            sni=i % 10 != 9,
        )
        for i, f in enumerate(demo_foundries(seed, POOL)[:count])
    ]
