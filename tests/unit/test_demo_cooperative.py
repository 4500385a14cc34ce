"""The seeded cooperative the chaos run and the reaction bench register: the same members with the same figures for
a seed and draw, every one equipped for composite blocks."""

from __future__ import annotations

import random

import pytest

from ceper.demo import demo_foundries
from ceper.demo.cooperative import COMPOSITE, composite_cooperative


def test_the_same_seed_and_draw_give_the_same_members_and_a_larger_one_only_adds():
    twelve = composite_cooperative(12, 7, random.Random(1))
    assert twelve == composite_cooperative(12, 7, random.Random(1))
    assert composite_cooperative(40, 7, random.Random(1))[:12] == twelve
    assert [m.weekly_units for m in composite_cooperative(12, 7, random.Random(2))] != [m.weekly_units for m in twelve]


def test_every_member_is_equipped_for_composite_blocks_with_figures_in_range():
    members = composite_cooperative(30, 1995, random.Random(1995), weekly_units=range(400, 720, 10))
    foundries = demo_foundries(1995, 170)
    assert [m.code for m in members] == [f.code for f in foundries[:30]]
    for member, foundry in zip(members, foundries, strict=False):
        assert COMPOSITE in member.product_families and set(foundry.product_families) <= set(member.product_families)
        assert 1 <= member.presses <= 4 and 400 <= member.weekly_units < 720 and member.weekly_units % 10 == 0
        assert 30.0 <= member.tkdn_percent <= 60.0
    assert [m.code for m in members if not m.sni] == ["IKM-010", "IKM-020", "IKM-030"]


def test_no_more_members_than_the_demo_cooperative_draws():
    with pytest.raises(ValueError, match="0 to 170"):
        composite_cooperative(171, 1995, random.Random(1995))
