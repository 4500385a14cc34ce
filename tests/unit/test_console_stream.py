"""The console's live stream and recent-events list send each person only what their role may see: never an
event's data, never NPWP or an owner's name to roles other than admin and planner."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from services.console.api import live_messages
from services.console.app import create_app
from services.console.domain import ADMIN, BUYER, FOUNDRY, LAB, PLANNER, QA_OFFICER, EventFeed, FeedItem, Person, view_of
from services.console.i18n import Translator
from services.console.people import current_person
from shared.settings import Settings

NPWP, OWNER = "3310012345678901", "Agus Purwanto"
REGISTERED = FeedItem(
    "e-1",
    "ceper.capacity.foundry_registered.v1",
    "/ceper/capacity",
    "IKM-071",
    datetime(2027, 3, 1, 3, 0, tzinfo=UTC),
    "ceper.capacity.v1",
    {
        "foundry_code": "IKM-071",
        "name": "CV Logam Jaya",
        "village": "Batur",
        "owner": OWNER,
        "npwp": NPWP,
        "registered_at": "2027-03-01T03:00:00Z",
    },
)
LOT_FAILED = FeedItem(
    "e-2",
    "ceper.quality.lot_failed.v1",
    "/ceper/quality",
    "IKM-071-K-0001",
    datetime(2027, 3, 1, 4, 0, tzinfo=UTC),
    "ceper.quality.v1",
    {"lot_code": "IKM-071-K-0001", "foundry_code": "IKM-071", "item_code": "BB-COMP-K", "quantity": 40, "order_id": "po_1",
     "report_number": "B4T/1", "laboratory": "B4T Bandung", "reasons": [{"parameter": "friction_coefficient"}]},
)  # fmt: skip


def person(role: str, tenant: str | None = None) -> Person:
    return Person(subject="p", name="p", role=role, tenant=tenant)


def sent(item: FeedItem, who: Person) -> str:
    return "\n".join(f"{m['event']}:{m['data']}" for m in live_messages(item, who, Translator("id")))


def test_the_stream_names_what_changed_and_says_it_in_a_sentence():
    messages = live_messages(LOT_FAILED, person(PLANNER), Translator("id"))
    events = [m["event"] for m in messages]
    assert {"order-po_1", "foundry-IKM-071", "quality", "dashboard"} <= set(events) and events[-1] == "feed"
    assert (
        "Lot IKM-071-K-0001 dari IKM-071 gagal uji (Koefisien gesek μ (rata-rata)): 40 unit harus dibuat ulang"
        in messages[-1]["data"]
    )
    assert "11.00 WIB" in messages[-1]["data"] and 'href="/orders/po_1"' in messages[-1]["data"]


def test_the_stream_never_carries_personal_data_to_roles_that_may_not_see_it():
    for who in (person(ADMIN), person(PLANNER), person(QA_OFFICER), person(FOUNDRY, "IKM-071")):
        text = sent(REGISTERED, who)
        assert "IKM-071" in text and NPWP not in text and OWNER not in text  # sentences never name them at all
    assert sent(REGISTERED, person(FOUNDRY, "IKM-002")) == ""
    assert sent(REGISTERED, person(BUYER, "KAI")) == "" and sent(LOT_FAILED, person(BUYER, "KAI")) == ""


async def test_recent_events_are_filtered_by_the_person_and_carry_no_data(tmp_path):
    app = create_app(Settings(env="test", var_dir=tmp_path))
    feed = app.state.runtime.state.setdefault("feed", EventFeed())
    feed.add(REGISTERED)
    feed.add(LOT_FAILED)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        anonymous = await client.get("/v1/events/recent")
        app.dependency_overrides[current_person] = lambda: person(ADMIN)
        as_admin = (await client.get("/v1/events/recent")).json()
        app.dependency_overrides[current_person] = lambda: person(FOUNDRY, "IKM-002")
        as_other_foundry = (await client.get("/v1/events/recent")).json()
        app.dependency_overrides[current_person] = lambda: person(QA_OFFICER)
        client.cookies.set("ceper_lang", "en")
        as_qa = await client.get("/v1/events/recent")
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Bearer")
    assert [e["id"] for e in as_admin] == ["e-2", "e-1"]
    assert all("data" not in e for e in as_admin) and NPWP not in str(as_admin)
    assert as_other_foundry == []
    assert NPWP not in as_qa.text and OWNER not in as_qa.text
    assert as_qa.json()[1]["sentence"] == "IKM-071 (CV Logam Jaya, Batur) joined the cooperative's register"


def test_personal_data_is_removed_at_any_depth_for_roles_that_may_not_see_it():
    nested = FeedItem(
        "e-3", "ceper.capacity.foundry_updated.v1", "/ceper/capacity", "IKM-071", REGISTERED.time, "ceper.capacity.v1",
        {"foundry_code": "IKM-071", "name": "CV Logam Jaya", "previous": {"owner": OWNER, "npwp": NPWP}, "owners": [{"owner": OWNER}]},
    )  # fmt: skip
    seen = view_of(nested, person(QA_OFFICER))
    assert seen is not None and OWNER not in str(seen.data) and NPWP not in str(seen.data)
    assert seen.data["name"] == "CV Logam Jaya"
    assert view_of(nested, person(PLANNER)) is nested  # admin and planner get the event as it is


def test_a_foundry_hears_only_of_itself_and_a_laboratory_only_of_lots():
    for item in (REGISTERED, LOT_FAILED):
        assert sent(item, person(FOUNDRY, "IKM-071")) != "" and sent(item, person(FOUNDRY, "IKM-002")) == ""
    assert sent(LOT_FAILED, person(LAB)) != "" and sent(REGISTERED, person(LAB)) == ""


def test_the_feed_links_only_to_pages_the_person_may_open():
    assert 'href="/orders/po_1"' in sent(LOT_FAILED, person(PLANNER))
    foundry = sent(LOT_FAILED, person(FOUNDRY, "IKM-071"))
    assert "/orders/" not in foundry and 'href="/members/IKM-071"' in foundry
    assert "href=" not in sent(LOT_FAILED, person(LAB))


def test_a_rejection_by_the_cooperative_reads_as_one_and_a_buyers_cancellation_as_the_other():
    def cancelled(reason: str) -> FeedItem:
        data = {"order_id": "po_9", "buyer_code": "KAI", "reason": reason, "cancelled_at": "2027-03-01T03:00:00Z"}
        return FeedItem("e-9", "ceper.orders.purchase_order_cancelled.v1", "/ceper/orders", "po_9", REGISTERED.time, "t", data)

    assert "Koperasi menolak pesanan KAI: Harga naik" in sent(
        cancelled("rejected by the cooperative: Harga naik"), person(PLANNER)
    )
    assert "KAI membatalkan pesanan: SPK ditarik" in sent(cancelled("SPK ditarik"), person(PLANNER))
