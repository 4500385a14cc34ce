"""Who may use the platform: the roles, and the tenant (buyer or foundry) a role is bound to.

One vocabulary for the identity service that grants roles and for every service that checks them.
"""

from __future__ import annotations

import re
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"  # runs the platform: clients, people, signing keys, audit
    PLANNER = "planner"  # the cooperative's planners and managers
    QA_OFFICER = "qa_officer"  # specifications, certificates, quality status
    LAB = "lab"  # a testing laboratory (B4T): records lot results
    FOUNDRY = "foundry"  # a member foundry: its own capacity and lots only
    BUYER = "buyer"  # a buyer's system (KAI, INKA): its own orders only


class Tenant(StrEnum):
    BUYER = "buyer_code"
    FOUNDRY = "foundry_code"


# The tenant each role is bound to; roles not listed act for the whole cooperative and carry none.
TENANT_OF: dict[Role, Tenant] = {Role.BUYER: Tenant.BUYER, Role.FOUNDRY: Tenant.FOUNDRY}
STAFF: frozenset[Role] = frozenset({Role.ADMIN, Role.PLANNER, Role.QA_OFFICER})

BUYER_CODE = re.compile(r"[A-Z][A-Z0-9]{1,15}")  # KAI, INKA, TMMIN
FOUNDRY_CODE = re.compile(r"IKM-\d{3,4}")  # the cooperative's member numbers
_TENANT_FORMAT = {
    Tenant.BUYER: (BUYER_CODE, "a buyer code such as KAI or INKA"),
    Tenant.FOUNDRY: (FOUNDRY_CODE, "a member code such as IKM-001"),
}


def tenant_problem(role: str, tenant: str | None) -> str | None:
    """Why `role` cannot be granted with `tenant`, or None when the pair is valid."""
    try:
        known = Role(role)
    except ValueError:
        return f"unknown role {role!r}: choose one of {', '.join(r.value for r in Role)}"
    kind = TENANT_OF.get(known)
    if kind is None:
        return f"role {known.value} acts for the whole cooperative and takes no tenant" if tenant else None
    if not tenant:
        return f"role {known.value} needs a tenant: {_TENANT_FORMAT[kind][1]}"
    pattern, described = _TENANT_FORMAT[kind]
    if not pattern.fullmatch(tenant):
        return f"tenant {tenant!r} of role {known.value} must be {described}"
    return None
