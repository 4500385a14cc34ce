"""Bounded field types of the event contract: every string and number as the services' tables store it.

SQLite stores a value of any length in a `VARCHAR(20)` and any 64-bit number in an `INTEGER`; PostgreSQL
refuses what does not fit its column. Each bound here is the tightest column, among the producer's and every
consumer's tables, that holds the field, so both databases accept the same events: an event outside them is
refused by its producer when it builds it, and dead-lettered with the reason by its consumers, whatever the
database. The bounds are what PostgreSQL always enforced, written where every consumer can read them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

# The largest value of an SQL INTEGER column (PostgreSQL's `integer`, 4 bytes).
INT32_MAX = 2_147_483_647
WEEK_PATTERN = r"^\d{4}-W\d{2}$"

FoundryCode = Annotated[str, Field(pattern=r"^IKM-\d{3,4}$", examples=["IKM-001"], description="A member foundry")]
ProductFamily = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{0,39}$", examples=["BRAKE_BLOCK_COMPOSITE"])]
ItemCode = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9-]{0,19}$", examples=["BB-COMP-K"])]
BuyerCode = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,19}$", examples=["KAI"])]
SiteCode = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9_-]{0,19}$", examples=["BY-YK"])]
Week = Annotated[str, Field(pattern=WEEK_PATTERN, examples=["2027-W10"], description="ISO week")]

OrderId = Annotated[str, Field(min_length=1, max_length=64)]
AllocationId = Annotated[str, Field(min_length=1, max_length=64)]
ReservationId = Annotated[str, Field(min_length=1, max_length=40)]
ChangeId = Annotated[str, Field(min_length=1, max_length=40)]
CertificateId = Annotated[str, Field(min_length=1, max_length=40)]
LotCode = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9./-]{2,39}$", examples=["IKM-001-K-0001"])]
# A lot as orders ships it: its shipments table holds up to 64 characters.
ShippedLotCode = Annotated[str, Field(min_length=1, max_length=64, examples=["IKM-001-K-0001"])]
ShipmentId = Annotated[str, Field(min_length=1, max_length=64)]
DocumentNumber = Annotated[str, Field(min_length=1, max_length=100)]  # PO, surat jalan, BAST, certificate, lab report


# Whole numbers stored in INTEGER columns: quantities, versions, revisions, counts.
Count = Annotated[int, Field(ge=0, le=INT32_MAX)]
PositiveCount = Annotated[int, Field(gt=0, le=INT32_MAX)]
Percent = Annotated[float, Field(ge=0, le=100)]
