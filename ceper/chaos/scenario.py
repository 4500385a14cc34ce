"""The business a chaos run plays through the services' APIs while the faults strike: members and their
certificates, purchase orders, capacity changes, certificate changes, lots and their results, shipments and
handovers, one cancellation. Seeded: the same seed gives the same timeline and the same choices; what the
services answer (plans, reservations) depends on timing, and the choices that read it follow it.

Every request goes to one of the service's replicas and fails over to the other, retrying for a bounded
time, as a client behind a load balancer would; a retried request is safe (idempotency keys, or 409 for
what exists already).
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx

from ceper.demo.cooperative import Member, composite_cooperative
from ceper.demo.quality import lab_result
from shared.weeks import iso_week, week_start

from .plan import Scale

FAMILY = "BRAKE_BLOCK_COMPOSITE"
ITEM = "BB-COMP-K"
# Each buyer's own delivery sites: an order delivers only to its buyer's.
SITES = {"KAI": ("BY-YK", "BY-MRI", "BY-TGL", "BY-SGU", "BY-KAC"), "INKA": ("INKA-MN", "INKA-BWI")}
BUYERS = tuple(SITES)
EXCEPTION_REASONS = ("press_breakdown", "power_cut", "material_shortage", "public_holiday", "furnace_breakdown")
REQUEST_DEADLINE_S = 120.0
WAIT_FOR_EVENTS_S = 60.0
SHIPPABLE_WAIT_S = 30.0
SLOW_STEP_S = 20.0


class ScenarioError(RuntimeError):
    """A step could not be done: a refusal the scenario did not expect, or no replica answered in time."""


class Stopped(Exception):
    """The run is being torn down."""


@dataclass
class Calls:
    """How the services answered, over the whole run."""

    requests: int = 0
    failovers: int = 0  # a replica did not answer (killed, restarting): the next one was asked
    server_errors: int = 0  # 5xx answers, retried


class Api:
    """One service's replicas behind one client."""

    def __init__(self, service: str, urls: list[str], client: httpx.Client, calls: Calls, stop: threading.Event) -> None:
        self.service = service
        self.urls = urls
        self.client = client
        self.calls = calls
        self.stop = stop
        self._turn = 0

    def url(self) -> str:
        """A replica's URL, in turn (for helpers that take a base URL)."""
        self._turn += 1
        return self.urls[self._turn % len(self.urls)]

    def request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200, 201),
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        deadline_s: float = REQUEST_DEADLINE_S,
    ) -> httpx.Response:
        """The answer when its status is in `ok`; a 5xx or no answer is retried on the other replica until the
        deadline; any other status raises `ScenarioError`."""
        deadline = time.monotonic() + deadline_s
        attempt = 0
        last = ""
        while True:
            if self.stop.is_set():
                raise Stopped
            base = self.url()
            self.calls.requests += 1
            try:
                answer = self.client.request(method, f"{base}{path}", json=json, params=params, headers=headers)
            except httpx.TransportError as exc:
                self.calls.failovers += 1
                last = f"{type(exc).__name__} from {base}"
            else:
                if answer.status_code in ok:
                    return answer
                if answer.status_code < 500:
                    raise ScenarioError(f"{method} {self.service}{path}: {answer.status_code} {answer.text[:300]}")
                self.calls.server_errors += 1
                last = f"{answer.status_code} from {base}: {answer.text[:200]}"
            if time.monotonic() > deadline:
                raise ScenarioError(f"{method} {self.service}{path}: no replica answered within {deadline_s:g} s ({last})")
            time.sleep(min(0.2 * 2**attempt, 2.0))
            attempt += 1


# --- what is drawn from the seed -------------------------------------------------------------------------------


def draw_members(seed: int, count: int) -> list[Member]:
    """The first `count` members of the demo cooperative, each equipped for composite brake blocks; at least 400
    units a week each, so that the run's orders find their capacity."""
    return composite_cooperative(count, seed, random.Random(f"ceper-chaos-members:{seed}"), weekly_units=range(400, 720, 10))


@dataclass(frozen=True)
class OrderDraft:
    n: int
    buyer: str
    po_number: str
    units: int
    site: str
    deliveries: tuple[tuple[int, int], ...]  # (days from today to the due date, units)
    small: bool  # made, shipped and handed over in full during the run
    cancelled_later: bool = False

    def body(self, today: date) -> dict[str, Any]:
        return {
            "buyer_code": self.buyer,
            "po_number": self.po_number,
            "issued_on": today.isoformat(),
            "lines": [
                {
                    "line_no": 1,
                    "item_code": ITEM,
                    "quantity": self.units,
                    "unit_price": 203_700,
                    "deliveries": [
                        {"due_date": (today + timedelta(days=days)).isoformat(), "quantity": units, "site_code": self.site}
                        for days, units in self.deliveries
                    ],
                    "requirements": {"certificates": ["SNI", "ISO9001"], "min_tkdn_percent": 25},
                }
            ],
        }


def draw_orders(seed: int, scale: Scale) -> list[OrderDraft]:
    rng = random.Random(f"ceper-chaos-orders:{seed}")
    drafts = []
    for n in range(scale.small_orders + scale.big_orders):
        small = n < scale.small_orders
        buyer = BUYERS[n % 2]
        deliveries: tuple[tuple[int, int], ...]
        if small:
            # Above the planner's floor (200 a foundry-week at most 35 % of the line each), made within weeks.
            units, deliveries = 1200, ((42 + 7 * n, 600), (56 + 7 * n, 600))
        else:
            units = rng.randrange(2400, 4201, 100)
            third = units // 3
            deliveries = tuple((63 + 28 * i + rng.randint(0, 6), q) for i, q in enumerate((third, third, units - 2 * third)))
        drafts.append(
            OrderDraft(
                n=n,
                buyer=buyer,
                po_number=f"{buyer}/CHAOS/{seed}/{n + 1:03d}",
                units=units,
                site=SITES[buyer][n // len(BUYERS) % len(SITES[buyer])],
                deliveries=deliveries,
                small=small,
                cancelled_later=not small and n == scale.small_orders + scale.big_orders - 1,
            )
        )
    return drafts


@dataclass(frozen=True)
class Action:
    at: float  # fraction of the window
    kind: str
    arg: int = 0


def draw_timeline(seed: int, scale: Scale, orders: list[OrderDraft]) -> list[Action]:
    rng = random.Random(f"ceper-chaos-timeline:{seed}")
    actions: list[Action] = []
    for order in orders:
        actions.append(Action(rng.uniform(0.0, 0.1) if order.small else rng.uniform(0.0, 0.3), "order", order.n))
        if order.small:
            actions.append(Action(0.25, "produce", order.n))
            actions += [Action(at, "fulfil", order.n) for at in (0.45, 0.6, 0.75, 0.88)]
        if order.cancelled_later:
            actions.append(Action(rng.uniform(0.45, 0.6), "cancel", order.n))
    actions += [Action(rng.uniform(0.03, 0.9), "capacity", i) for i in range(scale.capacity_changes)]
    for i in range(scale.certificate_changes):
        revoked = rng.uniform(0.15, 0.6)
        actions += [Action(revoked, "revoke", i), Action(revoked + rng.uniform(0.1, 0.2), "grant", i)]
    actions += [Action(rng.uniform(0.2, 0.85), "lots", i) for i in range(scale.lot_rounds)]
    actions += [Action(rng.uniform(0.5, 0.92), "ship", i) for i in range(scale.shipments)]
    return sorted(actions, key=lambda a: (a.at, a.kind, a.arg))


# --- the scenario ----------------------------------------------------------------------------------------------


@dataclass
class LotMade:
    lot_code: str
    order_n: int
    foundry_code: str
    allocation_id: str
    quantity: int
    outcome: str | None = None  # passed / failed once the result is recorded
    shipped: int = 0


@dataclass
class Tally:
    """What the scenario did, for the report."""

    done: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    revocations: int = 0  # reservations capacity cut back after our capacity changes

    def count(self, kind: str, into: dict[str, int] | None = None) -> None:
        target = self.done if into is None else into
        target[kind] = target.get(kind, 0) + 1


class Scenario:
    def __init__(
        self,
        seed: int,
        scale: Scale,
        urls: dict[str, list[str]],
        webhook_url: str,
        log: Callable[[str], None],
        auth: httpx.Auth,
    ) -> None:
        self.seed = seed
        self.scale = scale
        self.log = log
        self.webhook_url = webhook_url
        self.today = date.today()
        self.stop = threading.Event()
        self.calls = Calls()
        self.client = httpx.Client(timeout=30, auth=auth)  # every service's API needs a token: `auth` signs them
        self.api = {service: Api(service, list(found), self.client, self.calls, self.stop) for service, found in urls.items()}
        # For the checks after the run: not stopped with the scenario.
        self.reader = {
            service: Api(service, list(found), self.client, Calls(), threading.Event()) for service, found in urls.items()
        }
        self.members = draw_members(seed, scale.members)
        self.orders = draw_orders(seed, scale)
        self.timeline = draw_timeline(seed, scale, self.orders)
        self.tally = Tally()
        self.secrets: dict[str, str] = {}
        self.order_ids: dict[int, str] = {}
        self.cancelled: set[int] = set()
        self.sni: dict[str, str | None] = {}  # member → id of its SNI certificate in force, None once revoked
        self.sni_granted: dict[str, int] = {}
        self.exceptions: dict[tuple[str, str], str] = {}  # (member, week) → the exception in force there
        self.lots: dict[str, LotMade] = {}
        self.refused: dict[str, int] = {}  # lot → units the buyer refused at handover
        self.shipments = 0
        self._lot_counter = 0

    def close(self) -> None:
        self.stop.set()
        self.client.close()

    # --- setup, before the faults ---------------------------------------------------------------------------

    def setup(self, settle: Callable[[], None]) -> None:
        """Members with capacity and certificates, the buyers' webhook endpoints; returns once every service has
        applied what that caused (`settle`), so the first orders are planned on the whole cooperative."""
        capacity, quality, orders = self.api["capacity"], self.api["quality"], self.api["orders"]
        for m in self.members:
            entry = {
                "code": m.code,
                "name": m.name,
                "village": m.village,
                "product_families": m.product_families,
                "presses": m.presses,
            }
            capacity.request("POST", "/v1/foundries", json=entry, ok=(201, 409))
            change = {"kind": "standard", "reason": "declared", "product_family": FAMILY, "weekly_units": m.weekly_units}
            capacity.request(
                "POST", f"/v1/foundries/{m.code}/capacity-changes", json=change,
                headers={"Idempotency-Key": f"chaos-{self.seed}-declared-{m.code}"},
            )  # fmt: skip
        self._wait(lambda: {m.code for m in self.members} <= {f["code"] for f in quality.request("GET", "/v1/foundries").json()},
                   "quality to learn the members from capacity's events")  # fmt: skip
        validity = {
            "valid_from": (self.today - timedelta(days=120)).isoformat(),
            "valid_until": (self.today + timedelta(days=720)).isoformat(),
        }
        for m in self.members:
            certificates: list[dict[str, Any]] = [
                {"kind": "ISO9001", "number": f"ISO-{m.code}", "issuer": "PT Sucofindo (LSSM)"},
                {
                    "kind": "TKDN",
                    "number": f"TKDN-{m.code}",
                    "issuer": "Kementerian Perindustrian",
                    "tkdn_percent": m.tkdn_percent,
                },
            ]
            for certificate in certificates:
                quality.request(
                    "POST", "/v1/certificates", json={"foundry_code": m.code, **certificate, **validity}, ok=(201, 409)
                )
            if m.sni:
                self._grant_sni(m.code)
        for buyer in BUYERS:
            answer = orders.request("PUT", f"/v1/buyers/{buyer}/webhook", json={"url": self.webhook_url})
            self.secrets[buyer] = answer.json()["secret"]
        settle()

    def _grant_sni(self, code: str) -> None:
        k = self.sni_granted.get(code, 0) + 1
        body = {
            "foundry_code": code, "kind": "SNI", "number": f"SPPT-SNI/B4T/{code}/{k}", "issuer": "LSPro B4T", "items": [ITEM],
            "valid_from": (self.today - timedelta(days=30)).isoformat(), "valid_until": (self.today + timedelta(days=720)).isoformat(),
        }  # fmt: skip
        answer = self.api["quality"].request("POST", "/v1/certificates", json=body, ok=(201, 409))
        if answer.status_code == 409:  # granted by an earlier try whose answer was lost
            found = self.api["quality"].request("GET", "/v1/certificates", params={"foundry_code": code, "kind": "SNI"}).json()
            certificate_id = next(c["id"] for c in found if c["number"] == body["number"])
        else:
            certificate_id = answer.json()["id"]
        self.sni[code] = certificate_id
        self.sni_granted[code] = k

    def _wait(self, check: Callable[[], bool], what: str, timeout: float = WAIT_FOR_EVENTS_S) -> bool:
        deadline = time.monotonic() + timeout
        while not check():
            if self.stop.is_set():
                raise Stopped
            if time.monotonic() > deadline:
                raise ScenarioError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.5)
        return True

    # --- the timeline, while the faults strike -----------------------------------------------------------------

    def play(self) -> None:
        """Runs the timeline over the window; a step that fails is noted and the next one goes on."""
        started = time.monotonic()
        steps = {
            "order": self._order, "cancel": self._cancel, "capacity": self._capacity_change, "revoke": self._revoke,
            "grant": self._grant, "lots": self._lots, "produce": self._produce, "fulfil": self._fulfil, "ship": self._ship,
        }  # fmt: skip
        for index, action in enumerate(self.timeline):
            delay = started + action.at * self.scale.window_s - time.monotonic()
            if delay > 0 and self.stop.wait(delay):
                return
            if self.stop.is_set():
                return
            rng = random.Random(f"ceper-chaos-step:{self.seed}:{index}")
            began = time.monotonic()
            try:
                if steps[action.kind](action.arg, rng) is False:
                    self.tally.count(action.kind, self.tally.skipped)
                else:
                    self.tally.count(action.kind)
            except Stopped:
                return
            except (ScenarioError, httpx.HTTPError, KeyError, ValueError) as exc:
                self.tally.errors.append(f"{action.kind} {action.arg}: {exc}")
                self.log(f"scenario: {action.kind} {action.arg} failed: {str(exc)[:300]}")
            took = time.monotonic() - began
            if took > SLOW_STEP_S:
                self.log(f"scenario: {action.kind} {action.arg} took {took:.0f} s")

    def _order(self, n: int, rng: random.Random) -> bool:
        draft = self.orders[n]
        answer = self.api["orders"].request(
            "POST", "/v1/purchase-orders", json=draft.body(self.today), headers={"Idempotency-Key": f"chaos-{self.seed}-po-{n}"}
        )
        self.order_ids[n] = answer.json()["id"]
        return True

    def _cancel(self, n: int, rng: random.Random) -> bool:
        order_id = self.order_ids.get(n)
        if order_id is None:
            return False
        answer = self.api["orders"].request(
            "POST", f"/v1/purchase-orders/{order_id}/cancel", json={"reason": "SPK withdrawn by the buyer"}, ok=(200, 409)
        )
        self.cancelled.add(n)
        return answer.status_code == 200

    def _capacity_change(self, i: int, rng: random.Random) -> bool:
        member = rng.choice(self.members)
        week = iso_week(self.today + timedelta(weeks=rng.randint(1, 14)))
        key = {"Idempotency-Key": f"chaos-{self.seed}-capacity-{i}"}
        path = f"/v1/foundries/{member.code}/capacity-changes"
        withdrawn = self.exceptions.get((member.code, week))
        if withdrawn is not None:
            body: dict[str, Any] = {"kind": "withdrawal", "withdraws": withdrawn, "reason": "repaired"}
        elif rng.random() < 0.85:
            monday = week_start(week)
            days = rng.choice([6, 6, 2])  # the whole week, or a two-day power cut
            body = {
                "kind": "exception", "product_family": FAMILY, "reason": rng.choice(EXCEPTION_REASONS),
                "weekly_units": rng.choice([0, member.weekly_units // 3, member.weekly_units // 2]),
                "from_date": monday.isoformat(), "to_date": (monday + timedelta(days=days - 1)).isoformat(),
            }  # fmt: skip
        else:
            figure = int(member.weekly_units * rng.choice([0.8, 1.0, 1.15])) // 10 * 10
            body = {
                "kind": "standard",
                "product_family": FAMILY,
                "reason": "shift_change",
                "weekly_units": figure,
                "from_week": week,
            }
        answer = self.api["capacity"].request("POST", path, json=body, headers=key, ok=(200, 201, 409))
        if answer.status_code == 409:
            return False  # overlaps an exception with another figure: a member's report the register refuses
        result = answer.json()
        self.tally.revocations += len(result.get("revoked", []))
        if body["kind"] == "withdrawal":
            self.exceptions.pop((member.code, week), None)
        elif body["kind"] == "exception":
            self.exceptions[(member.code, week)] = result["change_id"]
        return True

    def _revoke(self, i: int, rng: random.Random) -> bool:
        holders = sorted(code for code, certificate in self.sni.items() if certificate is not None)
        if not holders:
            return False
        code = rng.choice(holders)
        certificate_id = self.sni[code]
        self.api["quality"].request(
            "POST", f"/v1/certificates/{certificate_id}/revoke", json={"reason": "surveillance audit missed"}, ok=(200, 409)
        )
        self.sni[code] = None
        return True

    def _grant(self, i: int, rng: random.Random) -> bool:
        lapsed = sorted(code for code, certificate in self.sni.items() if certificate is None)
        if not lapsed:
            return False
        self._grant_sni(rng.choice(lapsed))
        return True

    # --- production, shipping, handover ---------------------------------------------------------------------

    def _detail(self, n: int) -> dict[str, Any] | None:
        order_id = self.order_ids.get(n)
        if order_id is None:
            return None
        detail: dict[str, Any] = self.api["orders"].request("GET", f"/v1/purchase-orders/{order_id}").json()
        return detail

    def _register_lot(self, n: int, allocation: dict[str, Any], quantity: int, failing: bool) -> LotMade:
        self._lot_counter += 1
        lot = LotMade(
            f"{allocation['foundry_code']}-CH{self.seed % 1000}-{self._lot_counter:04d}",
            n,
            allocation["foundry_code"],
            allocation["allocation_id"],
            quantity,
        )
        body = {"lot_code": lot.lot_code, "foundry_code": lot.foundry_code, "item_code": ITEM, "quantity": quantity,
                "order_id": self.order_ids[n], "allocation_id": lot.allocation_id}  # fmt: skip
        quality = self.api["quality"]
        quality.request("POST", "/v1/lots", json=body, ok=(201, 409))
        self.lots[lot.lot_code] = lot
        current = quality.request("GET", f"/v1/lots/{lot.lot_code}").json()
        if current["status"] == "registered":
            spec = quality.request("GET", f"/v1/specifications/{ITEM}", params={"version": current["spec_version"]}).json()
            result = lab_result(spec, current["sampling_plan"], lot.lot_code, failing, self.seed, self.today, "B4T Bandung")
            answer = quality.request("POST", f"/v1/lots/{lot.lot_code}/results", json=result, ok=(201, 409))
            if answer.status_code == 201:
                lot.outcome = answer.json()["status"]
        if lot.outcome is None:  # decided by an earlier try whose answer was lost
            lot.outcome = quality.request("GET", f"/v1/lots/{lot.lot_code}").json()["status"]
        return lot

    def _unproduced(self, n: int, detail: dict[str, Any]) -> list[dict[str, Any]]:
        made = {lot.allocation_id for lot in self.lots.values() if lot.order_n == n}
        plan = detail.get("plan") or {}
        return [a for a in plan.get("allocations", []) if a["allocation_id"] not in made and a["state"] == "reserved"]

    def _lots(self, i: int, rng: random.Random) -> bool:
        """Members report lots for a few allocations of an order under way; about one in eight fails its test."""
        candidates = [d.n for d in self.orders if not d.small and not d.cancelled_later and d.n in self.order_ids]
        if not candidates:
            return False
        n = rng.choice(candidates)
        detail = self._detail(n)
        if detail is None or detail["status"] not in ("accepted", "planned"):
            return False
        open_allocations = self._unproduced(n, detail)
        if not open_allocations:
            return False
        for allocation in rng.sample(open_allocations, k=min(2, len(open_allocations))):
            quantity = allocation["quantity"] if rng.random() < 0.6 else max(1, allocation["quantity"] // 2)
            self._register_lot(n, allocation, quantity, failing=rng.random() < 0.12)
        return True

    def _produce(self, n: int, rng: random.Random) -> bool:
        """A small order's members make everything planned for it; every lot passes."""
        detail = self._detail(n)
        if detail is None or detail["status"] not in ("accepted", "needs_review"):
            return False  # a later step makes it, once capacity confirmed the plan
        for allocation in self._unproduced(n, detail):
            self._register_lot(n, allocation, allocation["quantity"], failing=False)
        return True

    def _fulfil(self, n: int, rng: random.Random) -> bool:
        """A small order: make what was planned since, ship every passed unit it still needs, hand it over in full."""
        if not self._produce(n, rng):
            return False
        return self._ship_order(n, rng, everything=True)

    def _ship(self, i: int, rng: random.Random) -> bool:
        candidates = sorted({lot.order_n for lot in self.lots.values() if lot.outcome == "passed" and lot.shipped < lot.quantity})
        candidates = [n for n in candidates if not self.orders[n].small and n not in self.cancelled]
        if not candidates:
            return False
        return self._ship_order(rng.choice(candidates), rng, everything=False)

    def _ship_order(self, n: int, rng: random.Random, *, everything: bool) -> bool:
        draft = self.orders[n]
        order_id = self.order_ids[n]
        shipped = sum(lot.shipped for lot in self.lots.values() if lot.order_n == n)
        refused = sum(self.refused.get(code, 0) for code, lot in self.lots.items() if lot.order_n == n)
        need = draft.units - shipped + refused
        ready = [lot for lot in self.lots.values() if lot.order_n == n and lot.outcome == "passed" and lot.shipped < lot.quantity]
        if not everything:
            ready = rng.sample(ready, k=min(len(ready), rng.randint(1, 3)))
        items: list[tuple[LotMade, int]] = []
        for lot in ready:
            quantity = min(lot.quantity - lot.shipped, need)
            if quantity <= 0:
                break
            items.append((lot, quantity))
            need -= quantity
        if not items:
            return False
        orders = self.api["orders"]

        def knows_passed() -> bool:  # orders learns of passed lots from quality's events
            return bool(self._line(n)["quantities"]["shippable"] >= sum(q for _, q in items))

        try:
            self._wait(knows_passed, f"orders to learn that the lots of order {n} passed", SHIPPABLE_WAIT_S)
        except ScenarioError:
            return False
        self.shipments += 1
        number = f"SJ/CHAOS/{self.seed}/{self.shipments:04d}"
        body = {"surat_jalan_number": number, "site_code": draft.site, "vehicle_plate": "AD 8123 KT", "driver_name": "Pak Slamet",
                "items": [{"lot_code": lot.lot_code, "quantity": q} for lot, q in items]}  # fmt: skip
        while True:
            answer = orders.request("POST", f"/v1/purchase-orders/{order_id}/shipments", json=body, ok=(201, 409, 422))
            if answer.status_code != 422:
                break
            # Orders may not have applied a lot's events yet (its consumer is behind): ship the others.
            unknown = lots_not_known_yet(answer.json())
            if unknown is None:
                raise ScenarioError(f"POST orders/v1/purchase-orders/{order_id}/shipments: 422 {answer.text[:300]}")
            items = [item for i, item in enumerate(items) if i not in unknown]
            if not items:
                return False
            body["items"] = [{"lot_code": lot.lot_code, "quantity": q} for lot, q in items]
        if answer.status_code == 201:
            shipment_id = answer.json()["id"]
        else:  # written by an earlier try whose answer was lost
            found = orders.request("GET", f"/v1/purchase-orders/{order_id}/shipments").json()
            shipment_id = next(s["id"] for s in found if s["surat_jalan_number"] == number)
        for lot, quantity in items:
            lot.shipped += quantity
        orders.request("POST", f"/v1/shipments/{shipment_id}/dispatch", ok=(200, 409))
        handover = []
        for lot, quantity in items:
            rejected = quantity // 10 if not everything and rng.random() < 0.2 else 0
            self.refused[lot.lot_code] = self.refused.get(lot.lot_code, 0) + rejected
            handover.append({"lot_code": lot.lot_code, "received": quantity - rejected, "rejected": rejected})
        bast = {"bast_number": f"BAST/{draft.site}/{self.seed}/{self.shipments:04d}", "signed_by": "Kepala Balai Yasa",
                "signed_on": self.today.isoformat(), "items": handover}  # fmt: skip
        orders.request("POST", f"/v1/shipments/{shipment_id}/handover", json=bast, ok=(200, 409))
        return True

    def _line(self, n: int) -> dict[str, Any]:
        detail = self._detail(n)
        assert detail is not None
        line: dict[str, Any] = detail["lines"][0]
        return line


def lots_not_known_yet(problem: dict[str, Any]) -> set[int] | None:
    """The items of a refused shipment whose lots orders does not know as passed yet; None when anything else
    was refused."""
    unknown: set[int] = set()
    for error in problem.get("errors", []):
        parts = str(error.get("field", "")).split(".")
        message = str(error.get("message", ""))
        if len(parts) != 4 or parts[:2] != ["body", "items"] or parts[3] != "lot_code" or not parts[2].isdigit():
            return None
        if "was not made for" not in message and "has not been tested yet" not in message:
            return None
        unknown.add(int(parts[2]))
    return unknown or None
