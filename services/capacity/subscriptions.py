"""What capacity reacts to: event type → handler.

Quality's item catalogue is a projection; plans, cancellations and lots change capacity's own reservations, which
`ceper replay` must not rebuild.
"""

from shared.events.orders import AllocationPlanned, PurchaseOrderCancelled
from shared.events.quality import ItemPublished, LotRegistered
from shared.inbox import Subscriptions

from . import handlers, store

SUBSCRIPTIONS = Subscriptions("capacity")
SUBSCRIPTIONS.add(ItemPublished, handlers.on_item_published, projection_of=[store.item_projection])
SUBSCRIPTIONS.add(AllocationPlanned, handlers.on_allocation_planned)
SUBSCRIPTIONS.add(PurchaseOrderCancelled, handlers.on_purchase_order_cancelled)
SUBSCRIPTIONS.add(LotRegistered, handlers.on_lot_registered)
