"""What orders reacts to: event type → handler."""

from shared.events.capacity import (
    CapacityChanged,
    FoundryRegistered,
    FoundryUpdated,
    ReservationConfirmed,
    ReservationConsumed,
    ReservationExpired,
    ReservationRejected,
    ReservationReleased,
    ReservationRevoked,
)
from shared.events.orders import PurchaseOrderReceived
from shared.events.quality import (
    CertificateGranted,
    CertificateRevoked,
    CertificationExpired,
    FoundryQualityStatusChanged,
    ItemPublished,
    LotFailed,
    LotPassed,
    LotRegistered,
)
from shared.inbox import Subscriptions

from . import handlers, projections, store

SUBSCRIPTIONS = Subscriptions("orders")
SUBSCRIPTIONS.add(FoundryRegistered, handlers.on_foundry_changed, projection_of=[store.foundry_projection])
SUBSCRIPTIONS.add(FoundryUpdated, handlers.on_foundry_changed, projection_of=[store.foundry_projection])
SUBSCRIPTIONS.add(
    CapacityChanged,
    projections.on_capacity_changed,
    projection_of=[store.capacity_projection, store.standard_capacity_projection],
)
for reservation_event in (ReservationConfirmed, ReservationRevoked, ReservationReleased, ReservationExpired, ReservationConsumed):
    SUBSCRIPTIONS.add(reservation_event, projections.on_reservation_event, projection_of=[store.reservation_projection])
for certificate_event in (CertificateGranted, CertificateRevoked, CertificationExpired):
    SUBSCRIPTIONS.add(certificate_event, projections.on_certificate_event, projection_of=[store.certificate_projection])
SUBSCRIPTIONS.add(
    FoundryQualityStatusChanged, projections.on_quality_status_changed, projection_of=[store.quality_status_projection]
)
SUBSCRIPTIONS.add(ItemPublished, projections.on_item_published, projection_of=[store.item_projection])
for lot_event in (LotRegistered, LotPassed, LotFailed):
    SUBSCRIPTIONS.add(lot_event, projections.on_lot_event, projection_of=[store.lot_projection])

# Reactions: planning is driven by orders' own event, so an accepted order is planned even after a crash.
SUBSCRIPTIONS.react(PurchaseOrderReceived, handlers.on_purchase_order_received)
SUBSCRIPTIONS.react(ReservationConfirmed, handlers.on_reservation_confirmed)
SUBSCRIPTIONS.react(ReservationRejected, handlers.on_reservation_rejected)
SUBSCRIPTIONS.react(ReservationRevoked, handlers.on_reservation_revoked)
SUBSCRIPTIONS.react(LotFailed, handlers.on_lot_failed)
for certificate_lost in (CertificateRevoked, CertificationExpired):
    SUBSCRIPTIONS.react(certificate_lost, handlers.on_certificate_lost)
SUBSCRIPTIONS.react(CertificateGranted, handlers.on_certificate_granted)
SUBSCRIPTIONS.react(FoundryQualityStatusChanged, handlers.on_quality_status_changed)
SUBSCRIPTIONS.react(FoundryUpdated, handlers.on_member_changed)
SUBSCRIPTIONS.react(CapacityChanged, handlers.on_capacity_changed)
# What the reactions of a batch ask of each order's plan is planned once, at the batch's end.
SUBSCRIPTIONS.settle(handlers.settle_replans)
