"""ISO 2859-1 attribute sampling: single sampling plans for normal inspection, with the standard's tables as data.

Lot size and inspection level give a sample size code letter (Table 1); the code letter and the acceptance
quality limit (AQL) give the sample size and the acceptance / rejection numbers (Table 2-A). Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

INSPECTION_LEVELS = ("S-1", "S-2", "S-3", "S-4", "I", "II", "III")
DEFAULT_INSPECTION_LEVEL = "II"

# Table 1, sample size code letters: (largest lot size of the row, letter per level in INSPECTION_LEVELS order).
CODE_LETTERS: tuple[tuple[int | None, str], ...] = (
    (8, "AAAAAAB"),
    (15, "AAAAABC"),
    (25, "AABBBCD"),
    (50, "ABBCCDE"),
    (90, "BBCCCEF"),
    (150, "BBCDDFG"),
    (280, "BCDEEGH"),
    (500, "BCDEFHJ"),
    (1_200, "CCEFGJK"),
    (3_200, "CDEGHKL"),
    (10_000, "CDFGJLM"),
    (35_000, "CDFHKMN"),
    (150_000, "DEGJLNP"),
    (500_000, "DEGJMPQ"),
    (None, "DEHKNQR"),  # 500 001 and over
)

SAMPLE_SIZES: dict[str, int] = {
    "A": 2,
    "B": 3,
    "C": 5,
    "D": 8,
    "E": 13,
    "F": 20,
    "G": 32,
    "H": 50,
    "J": 80,
    "K": 125,
    "L": 200,
    "M": 315,
    "N": 500,
    "P": 800,
    "Q": 1250,
    "R": 2000,
}

# AQL columns of Table 2-A: percent nonconforming up to 10, nonconformities per 100 items above.
AQLS: tuple[float, ...] = (
    0.010,
    0.015,
    0.025,
    0.040,
    0.065,
    0.10,
    0.15,
    0.25,
    0.40,
    0.65,
    1.0,
    1.5,
    2.5,
    4.0,
    6.5,
    10,
    15,
    25,
    40,
    65,
    100,
    150,
    250,
    400,
    650,
    1000,
)

# Table 2-A, single sampling plans for normal inspection: "Ac/Re", or an arrow meaning "use the first
# sampling plan below (↓) or above (↑) the arrow, with its sample size".
# AQL:    0.010 0.015 0.025 0.040 0.065  0.10  0.15  0.25  0.40  0.65   1.0   1.5   2.5   4.0   6.5    10    15    25    40    65   100   150   250   400   650  1000
NORMAL_SINGLE: dict[str, str] = {
    "A": "    ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓   0/1     ↓     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22 30/31",
    "B": "    ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22 30/31 44/45",
    "C": "    ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22 30/31 44/45     ↑",
    "D": "    ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22 30/31 44/45     ↑     ↑",
    "E": "    ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22 30/31 44/45     ↑     ↑     ↑",
    "F": "    ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑",
    "G": "    ↓     ↓     ↓     ↓     ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
    "H": "    ↓     ↓     ↓     ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
    "J": "    ↓     ↓     ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
    "K": "    ↓     ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
    "L": "    ↓     ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
    "M": "    ↓     ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
    "N": "    ↓     ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
    "P": "    ↓   0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
    "Q": "  0/1     ↑     ↓   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
    "R": "    ↑     ↑   1/2   2/3   3/4   5/6   7/8 10/11 14/15 21/22     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑     ↑",
}

LETTERS = tuple(SAMPLE_SIZES)
_CELLS: dict[str, tuple[str, ...]] = {letter: tuple(row.split()) for letter, row in NORMAL_SINGLE.items()}


class SamplingError(ValueError):
    """The lot size, inspection level or AQL is not one the standard's tables know."""


@dataclass(frozen=True)
class SamplingPlan:
    lot_size: int
    inspection_level: str
    aql: float
    code_letter: str  # from Table 1
    plan_letter: str  # the row whose plan is used, after following Table 2-A's arrows
    sample_size: int
    acceptance_number: int  # Ac: accept the lot with at most this many nonconforming samples
    rejection_number: int  # Re: reject it with this many or more

    @property
    def inspects_every_unit(self) -> bool:
        return self.sample_size == self.lot_size

    def accepts(self, nonconforming: int) -> bool:
        return nonconforming <= self.acceptance_number

    def describe(self) -> str:
        return (
            f"ISO 2859-1 single sampling, normal inspection, level {self.inspection_level}, AQL {format_aql(self.aql)}: "
            f"code {self.code_letter}, n={self.sample_size}, Ac {self.acceptance_number}, Re {self.rejection_number}"
        )


def format_aql(aql: float) -> str:
    return f"{aql:g}"


def aql_column(aql: float) -> int:
    for index, known in enumerate(AQLS):
        if abs(known - aql) <= 1e-9 * known:
            return index
    raise SamplingError(f"AQL {format_aql(aql)} is not a column of ISO 2859-1; choose one of {', '.join(map(format_aql, AQLS))}")


def code_letter(lot_size: int, inspection_level: str = DEFAULT_INSPECTION_LEVEL) -> str:
    if inspection_level not in INSPECTION_LEVELS:
        raise SamplingError(f"inspection level {inspection_level!r} is not one of {', '.join(INSPECTION_LEVELS)}")
    if lot_size < 1:
        raise SamplingError("a lot has at least one unit")
    level = INSPECTION_LEVELS.index(inspection_level)
    for largest, letters in CODE_LETTERS:
        if largest is None or lot_size <= largest:
            return letters[level]
    raise AssertionError("the last row of Table 1 has no upper bound")


def single_sampling_plan(lot_size: int, aql: float, inspection_level: str = DEFAULT_INSPECTION_LEVEL) -> SamplingPlan:
    """The plan for a lot; a lot no larger than the sample (Table 1 starts at 2 units) is inspected unit by unit
    with the same acceptance and rejection numbers."""
    letter = code_letter(lot_size, inspection_level)
    column = aql_column(aql)
    row = LETTERS.index(letter)
    while True:
        cell = _CELLS[LETTERS[row]][column]
        if cell == "↓":
            row += 1
        elif cell == "↑":
            row -= 1
        else:
            break
        if not 0 <= row < len(LETTERS):  # pragma: no cover - the table's arrows never point outside it
            raise AssertionError(f"Table 2-A arrow leads out of the table at {letter}/{format_aql(aql)}")
    accept, reject = (int(n) for n in cell.split("/"))
    plan_letter = LETTERS[row]
    return SamplingPlan(
        lot_size=lot_size,
        inspection_level=inspection_level,
        aql=AQLS[column],
        code_letter=letter,
        plan_letter=plan_letter,
        sample_size=min(SAMPLE_SIZES[plan_letter], lot_size),
        acceptance_number=accept,
        rejection_number=reject,
    )
