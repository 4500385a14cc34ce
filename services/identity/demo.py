"""Demo identities for `make dev`: the buyers' and the laboratory's systems, and one person per kind of work.

Development only. The people get one known password; the clients get a fresh secret at every run (a
secret is shown once, so the one of the last run cannot be shown again), printed with how to use it.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.audit import Actor

from . import handlers, store

DEMO_PASSWORD = "batur-jaya-demo"  # development only: printed by `make dev`
DEMO_CLIENTS = (("kai-procurement", "buyer", "KAI"), ("inka-procurement", "buyer", "INKA"), ("b4t-lab", "lab", None))
DEMO_PEOPLE = (
    ("admin", "admin", None),
    ("planner", "planner", None),
    ("qa.officer", "qa_officer", None),
    ("ikm-001", "foundry", "IKM-001"),
)
ACTOR = Actor("ceper-dev", "operator")


@dataclass(frozen=True)
class DemoLogins:
    clients: list[tuple[str, str, str]]  # name, client_id, secret
    people: list[tuple[str, str]]  # username, role


async def seed_identity(sessions: handlers.Sessions) -> DemoLogins:
    clients = []
    for name, role, tenant in DEMO_CLIENTS:
        async with sessions() as session:
            existing = await store.find_client(session, name)
        if existing is not None and existing.active:
            issued = await handlers.rotate_client_secret(sessions, ACTOR, existing.client_id)
        else:
            issued = await handlers.add_client(sessions, ACTOR, name if existing is None else f"{name}-demo", role, tenant)
        clients.append((issued.client.name, issued.client.client_id, issued.secret))
    people = []
    for username, role, tenant in DEMO_PEOPLE:
        async with sessions() as session:
            existing_person = await store.find_person(session, username)
        if existing_person is None:
            await handlers.add_person(sessions, ACTOR, username, role, tenant, DEMO_PASSWORD)
        elif existing_person.active:
            await handlers.reset_password(sessions, ACTOR, username, DEMO_PASSWORD)
        people.append((username, role if tenant is None else f"{role} {tenant}"))
    return DemoLogins(clients, people)
