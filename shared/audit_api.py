"""The audit trail over HTTP: `GET /v1/audit`, the same route in every service that keeps a trail, for admins."""

# No `from __future__ import annotations`: FastAPI reads the route's parameter types when the route is built.

from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel

from . import audit
from .auth import Principal, require
from .http import problem_responses
from .paging import Page, Paging, paging_query
from .roles import Role
from .service import Sessions


class AuditEntry(BaseModel):
    id: int
    at: datetime
    actor_subject: str
    actor_role: str | None
    action: str
    entity_type: str
    entity_id: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None


class AuditPage(Page[AuditEntry]):
    pass


def trail_router(table: sa.Table, entities: tuple[str, ...]) -> APIRouter:
    """The route serving `table`'s trail; `entities` are the entity types the service records, for the docs."""
    router = APIRouter(prefix="/v1", tags=["audit"])

    @router.get(
        "/audit",
        response_model=AuditPage,
        summary="Who changed what, when, from what to what, and through which request or event (newest first)",
        responses=problem_responses(401, 403, 422),
    )
    async def audit_trail(
        sessions: Sessions,
        _caller: Annotated[Principal, Depends(require(Role.ADMIN))],
        paging: Annotated[Paging, paging_query(default_limit=100, max_limit=1000)],
        entity: Annotated[str | None, Query(max_length=80, description=f"One of: {', '.join(entities)}")] = None,
        entity_id: Annotated[str | None, Query(max_length=200)] = None,
    ) -> AuditPage:
        async with sessions() as session:
            rows, total = await audit.page(
                session, table, entity_type=entity, entity_id=entity_id, limit=paging.limit, offset=paging.offset
            )
        return AuditPage.of((AuditEntry.model_validate(row) for row in rows), total, paging)

    return router
