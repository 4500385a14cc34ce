"""What capacity reacts to: event type → handler."""

from shared.events.orders import PurchaseOrderReceived
from shared.inbox import Subscriptions

from . import handlers, store

SUBSCRIPTIONS = Subscriptions("capacity")
SUBSCRIPTIONS.add(PurchaseOrderReceived, handlers.on_purchase_order_received, projection_of=[store.order_demand])
