"""Subscriptions: one handler per event type, reactions after it, replay sees projections only."""

from __future__ import annotations

from types import SimpleNamespace

import sqlalchemy as sa

from shared import audit
from shared.events.capacity import FoundryRegistered, FoundryUpdated
from shared.inbox import Subscriptions

table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))


async def test_reactions_run_after_the_projection_in_order():
    calls: list[str] = []
    actors: list[audit.Actor | None] = []

    async def project(session, envelope):
        calls.append("project")

    async def replan(session, envelope):
        calls.append("replan")
        actors.append(audit.current_actor.get())

    async def notify(session, envelope):
        calls.append("notify")

    subscriptions = Subscriptions("orders")
    subscriptions.add(FoundryRegistered, project, projection_of=[table])
    subscriptions.react(FoundryRegistered, replan)
    subscriptions.react(FoundryRegistered, notify)
    subscriptions.react(FoundryUpdated, replan)

    event = SimpleNamespace(id="evt-1", type=FoundryRegistered.event_type())
    await subscriptions.get(FoundryRegistered.event_type().name).apply(None, event)
    assert calls == ["project", "replan", "notify"]
    # What the handlers change is audited as the event's doing, and only while they run.
    assert actors == [audit.Actor(FoundryRegistered.event_type().source, "event", "evt-1")]
    assert audit.current_actor.get() is None
    assert [s.event_type.name for s in subscriptions.projections()] == [FoundryRegistered.event_type().name]
    reaction_only = subscriptions.get(FoundryUpdated.event_type().name)
    assert not reaction_only.is_projection and reaction_only.reactions == ()


async def test_settlers_run_once_after_the_events_of_a_batch():
    calls: list[str] = []

    async def first(session):
        calls.append("first")

    async def second(session):
        calls.append("second")

    subscriptions = Subscriptions("orders")
    subscriptions.settle(first)
    subscriptions.settle(second)
    await subscriptions.settled(None)
    assert calls == ["first", "second"]
