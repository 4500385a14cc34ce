"""Paging of list answers: one page model and one query dependency, so every list route pages alike.

A list answers `{"items": [...], "total": n, "limit": l, "offset": o}`: `total` counts every match, so a
client pages with `offset += len(items)` until it reaches `total`.
"""

# No `from __future__ import annotations` here: FastAPI must read the bounds in `paging_query`'s parameters
# when the route is built, and postponed annotations would hide them behind names of a closure.

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Self, TypeVar

from fastapi import Depends, Query
from pydantic import BaseModel

T = TypeVar("T")

MAX_OFFSET = 1_000_000_000  # bounded so a client's number never overflows a database integer


@dataclass(frozen=True)
class Paging:
    """Which slice of a list the client asked for."""

    limit: int
    offset: int


class Page(BaseModel, Generic[T]):
    """One page of a list. A route names its own page (`class LotPage(Page[LotOut])`) so the OpenAPI document does."""

    items: list[T]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, items: Iterable[T], total: int, paging: Paging) -> Self:
        return cls(items=list(items), total=total, limit=paging.limit, offset=paging.offset)


def paging_query(*, default_limit: int = 50, max_limit: int = 500) -> Any:
    """The `limit` and `offset` query parameters of a list route, as a dependency: `Annotated[Paging, paging_query()]`."""

    async def paging(  # a coroutine: FastAPI would run a plain function in its thread pool
        limit: Annotated[int, Query(ge=1, le=max_limit)] = default_limit,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> Paging:
        return Paging(limit=limit, offset=offset)

    return Depends(paging)
