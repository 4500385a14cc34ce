"""What orders reacts to: event type → handler."""

from shared.events.capacity import FoundryRegistered, FoundryUpdated
from shared.inbox import Subscriptions

from . import handlers, store

SUBSCRIPTIONS = Subscriptions("orders")
SUBSCRIPTIONS.add(FoundryRegistered, handlers.on_foundry_changed, projection_of=[store.foundry_projection])
SUBSCRIPTIONS.add(FoundryUpdated, handlers.on_foundry_changed, projection_of=[store.foundry_projection])
