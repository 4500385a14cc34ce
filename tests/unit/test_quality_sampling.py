"""ISO 2859-1 single sampling for normal inspection: the tables as data, checked against the standard's values."""

from __future__ import annotations

import pytest

from services.quality.sampling import (
    AQLS,
    CODE_LETTERS,
    INSPECTION_LEVELS,
    LETTERS,
    NORMAL_SINGLE,
    SAMPLE_SIZES,
    SamplingError,
    code_letter,
    single_sampling_plan,
)


@pytest.mark.parametrize(
    "lot_size, level, letter",
    [
        (2, "II", "A"),
        (8, "II", "A"),
        (9, "II", "B"),
        (15, "II", "B"),
        (16, "II", "C"),
        (50, "II", "D"),
        (51, "II", "E"),
        (90, "II", "E"),
        (91, "II", "F"),
        (150, "II", "F"),
        (151, "II", "G"),
        (280, "II", "G"),
        (281, "II", "H"),
        (500, "II", "H"),
        (501, "II", "J"),
        (1200, "II", "J"),
        (1201, "II", "K"),
        (3200, "II", "K"),
        (3201, "II", "L"),
        (10_000, "II", "L"),
        (10_001, "II", "M"),
        (35_000, "II", "M"),
        (35_001, "II", "N"),
        (150_001, "II", "P"),
        (500_001, "II", "Q"),
        (8, "III", "B"),
        (500_001, "III", "R"),
        (10_000, "I", "J"),
        (1200, "I", "G"),
        (500, "S-1", "B"),
        (501, "S-1", "C"),
        (1200, "S-4", "F"),
        (3201, "S-3", "F"),
        (500_001, "S-4", "K"),
    ],
)
def test_code_letters_of_table_1(lot_size: int, level: str, letter: str):
    assert code_letter(lot_size, level) == letter


@pytest.mark.parametrize(
    "lot_size, aql, sample_size, accept, reject",
    [
        # Values quoted wherever the standard is taught (general inspection level II).
        (1000, 2.5, 80, 5, 6),
        (1000, 1.0, 80, 2, 3),
        (1000, 4.0, 80, 7, 8),
        (5000, 2.5, 200, 10, 11),
        (5000, 1.5, 200, 7, 8),
        (5000, 4.0, 200, 14, 15),
        (5000, 1.0, 200, 5, 6),
        (3000, 2.5, 125, 7, 8),
        (3000, 4.0, 125, 10, 11),
        (400, 2.5, 50, 3, 4),
        (400, 4.0, 50, 5, 6),
        (400, 1.0, 50, 1, 2),
        (200, 2.5, 32, 2, 3),
        (100, 0.65, 20, 0, 1),
        (20_000, 2.5, 315, 14, 15),
        (20_000, 4.0, 315, 21, 22),
        (100_000, 1.5, 500, 14, 15),
        (100_000, 2.5, 500, 21, 22),
        (30, 6.5, 8, 1, 2),
    ],
)
def test_known_plans_of_table_2a(lot_size: int, aql: float, sample_size: int, accept: int, reject: int):
    plan = single_sampling_plan(lot_size, aql)
    assert (plan.sample_size, plan.acceptance_number, plan.rejection_number) == (sample_size, accept, reject)
    assert plan.code_letter == plan.plan_letter


@pytest.mark.parametrize(
    "lot_size, aql, code, used, sample_size, accept",
    [
        (500, 0.65, "H", "J", 80, 1),  # H at 0.65 points down to J's 1/2
        (150, 1.5, "F", "G", 32, 1),  # F at 1.5 points down
        (50, 4.0, "D", "E", 13, 1),  # D at 4.0 points down
        (80, 1.5, "E", "D", 8, 0),  # E at 1.5 points up to D's 0/1
        (100, 1.0, "F", "E", 13, 0),  # F at 1.0 points up to E's 0/1
        (2000, 15, "K", "J", 80, 21),  # the 30/31 plans stop at code E: K at 15 points up to J's 21/22
        (600_000, 0.015, "Q", "P", 800, 0),  # R and Q at 0.015 lead up to P's 0/1
    ],
)
def test_arrows_lead_to_the_first_plan_below_or_above(lot_size, aql, code, used, sample_size, accept):
    plan = single_sampling_plan(lot_size, aql)
    assert (plan.code_letter, plan.plan_letter, plan.sample_size, plan.acceptance_number) == (code, used, sample_size, accept)
    assert plan.rejection_number == accept + 1


def test_a_lot_no_larger_than_the_sample_is_inspected_unit_by_unit():
    plan = single_sampling_plan(3, 2.5)  # A at 2.5 points down to C: 5 samples from a lot of 3
    assert (plan.sample_size, plan.acceptance_number, plan.rejection_number) == (3, 0, 1)
    assert plan.inspects_every_unit
    assert single_sampling_plan(1, 6.5).sample_size == 1
    assert not single_sampling_plan(1000, 2.5).inspects_every_unit


def test_acceptance_and_rejection_numbers_decide_the_lot():
    plan = single_sampling_plan(1000, 2.5)  # n=80, Ac 5, Re 6
    assert plan.accepts(0) and plan.accepts(5)
    assert not plan.accepts(6) and not plan.accepts(80)
    assert "n=80, Ac 5, Re 6" in plan.describe()


def test_inputs_the_tables_do_not_know_are_refused():
    with pytest.raises(SamplingError, match="AQL 3"):
        single_sampling_plan(1000, 3.0)
    with pytest.raises(SamplingError, match="level"):
        single_sampling_plan(1000, 2.5, "IV")
    with pytest.raises(SamplingError, match="at least one unit"):
        single_sampling_plan(0, 2.5)


# --- the tables themselves -----------------------------------------------------------------------------------

# Along a diagonal of Table 2-A (one code letter down, one AQL column left) the plan stays the same, because
# sample sizes and AQLs both grow by the same ratio of about 1.6. Index = letter row + AQL column.
DIAGONAL_PLANS = {
    14: "0/1",
    17: "1/2",
    18: "2/3",
    19: "3/4",
    20: "5/6",
    21: "7/8",
    22: "10/11",
    23: "14/15",
    24: "21/22",
    25: "30/31",
    26: "44/45",
}


def test_table_2a_has_one_cell_per_code_letter_and_aql():
    assert list(NORMAL_SINGLE) == list(SAMPLE_SIZES) == list(LETTERS)
    for row in NORMAL_SINGLE.values():
        assert len(row.split()) == len(AQLS) == 26
    assert [SAMPLE_SIZES[letter] for letter in LETTERS] == [2, 3, 5, 8, 13, 20, 32, 50, 80, 125, 200, 315, 500, 800, 1250, 2000]


def test_every_plan_of_table_2a_lies_on_its_diagonal():
    for row, letter in enumerate(LETTERS):
        for column, cell in enumerate(NORMAL_SINGLE[letter].split()):
            if "/" in cell:
                assert DIAGONAL_PLANS[row + column] == cell, f"{letter} at AQL {AQLS[column]:g}"
                accept, reject = map(int, cell.split("/"))
                assert reject == accept + 1
            else:
                assert cell in "↑↓"


def test_every_arrow_reaches_a_plan_in_its_column():
    for lot_size in (2, 10, 20, 40, 80, 120, 200, 400, 1000, 2000, 5000, 20_000, 100_000, 300_000, 600_000):
        for level in INSPECTION_LEVELS:
            for aql in AQLS:
                plan = single_sampling_plan(lot_size, aql, level)
                assert plan.rejection_number == plan.acceptance_number + 1
                assert plan.sample_size == min(SAMPLE_SIZES[plan.plan_letter], lot_size)


def test_table_1_rows_grow_with_the_lot_and_the_level():
    bounds = [largest for largest, _ in CODE_LETTERS]
    assert bounds[:-1] == sorted(bounds[:-1]) and bounds[-1] is None
    for _, letters in CODE_LETTERS:
        assert len(letters) == len(INSPECTION_LEVELS)
    for level in range(len(INSPECTION_LEVELS)):
        column = [LETTERS.index(letters[level]) for _, letters in CODE_LETTERS]
        assert column == sorted(column)
