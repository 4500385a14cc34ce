"""The route × role × tenant matrix, generated from the routes the services really serve.

Orders, capacity, quality and identity run in-process on the real broker and database; every API route is called by
every kind of caller: no token, each staff role, a laboratory, the foundry IKM-001 and another member (IKM-002), the
buyer KAI and another buyer (INKA). What each must get follows from the route's declared rule and the resources it
names (KAI's order, shipment and webhook; IKM-001's entry, reservation, certificate and lot):

- no token: 401; a role the rule does not name: 403 — both problem+json with `WWW-Authenticate`;
- a buyer or foundry naming another tenant's resource: 404, as if it did not exist;
- otherwise a read answers 200, a change gets past the rule (its own checks may then refuse an empty body).

Changes of other tenants' resources with well-formed bodies are checked one by one at the end.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from services.identity import handlers as identity_handlers
from services.identity.app import create_app as create_identity
from services.orders import store as orders_store
from shared.audit import Actor
from shared.auth import RouteRule
from shared.http import PROBLEM_JSON
from tests.fixtures.tokens import ANONYMOUS, as_
from tests.integration.capacity_support import COMPOSITE
from tests.integration.quality_helpers import register_foundries
from tests.support import RECEIVER_ON_LOOPBACK, RunningService, run_service, run_services
from tests.unit.test_route_rules import routes_of

pytestmark = pytest.mark.parametrize("backend", ["sqlite"])  # the rules do not depend on the database

CALLERS: dict[str, tuple[str | None, str | None]] = {
    "anonymous": (None, None),
    "admin": ("admin", None),
    "planner": ("planner", None),
    "qa_officer": ("qa_officer", None),
    "lab": ("lab", None),
    "foundry IKM-001": ("foundry", "IKM-001"),
    "foundry IKM-002": ("foundry", "IKM-002"),
    "buyer KAI": ("buyer", "KAI"),
    "buyer INKA": ("buyer", "INKA"),
}
OWNER = {"buyer": "KAI", "foundry": "IKM-001"}  # whose resources the path parameters name

# Path parameters naming a tenant's resource, by service; other parameters (an item code) belong to no tenant.
TENANT_PARAMETERS = {
    "orders": {"order_id": "buyer", "shipment_id": "buyer", "buyer_code": "buyer"},
    "capacity": {"code": "foundry", "reservation_id": "foundry"},
    "quality": {"certificate_id": "foundry", "lot_code": "foundry", "foundry_code": "foundry"},
    "identity": {},
}
QUERIES = {
    ("capacity", "/v1/availability"): {"product_family": COMPOSITE, "from": "2027-W01", "to": "2027-W04"},
    ("quality", "/v1/sampling-plan"): {"lot_size": 500},
    ("quality", "/v1/eligibility"): {"item": "BB-COMP-K"},
}
SEEDED = ("orders", "capacity", "quality")  # reads of these find what seed() made, so they must answer 200


def auth_of(caller: str) -> httpx.Auth:
    role, tenant = CALLERS[caller]
    return ANONYMOUS if role is None else as_(role, tenant)


class Bearer(httpx.Auth):
    def __init__(self, token: str) -> None:
        self.token = token

    def auth_flow(self, request: httpx.Request) -> Any:
        request.headers["authorization"] = f"Bearer {self.token}"
        yield request


async def identity_callers(identity: RunningService) -> dict[str, httpx.Auth]:
    """Identity trusts only the tokens it signs: one machine client per caller, each with a token from /oauth/token."""
    callers: dict[str, httpx.Auth] = {"anonymous": ANONYMOUS}
    for caller, (role, tenant) in CALLERS.items():
        if role is None:
            continue
        assert identity.runtime.sessions is not None
        issued = await identity_handlers.add_client(
            identity.runtime.sessions, Actor("matrix"), "matrix-" + caller.lower().replace(" ", "-"), role, tenant
        )
        answer = await identity.http.post(
            "/oauth/token", data={"grant_type": "client_credentials"}, auth=(issued.client.client_id, issued.secret)
        )
        assert answer.status_code == 200, answer.text
        callers[caller] = Bearer(answer.json()["access_token"])
    return callers


def expected(service: str, method: str, path: str, rule: RouteRule, caller: str) -> str:
    """'401', '403', '404', '200', or 'past the rule' (any answer but 401 and 403)."""
    role, tenant = CALLERS[caller]
    if rule.public:
        return "200" if method == "GET" else "past the rule"
    if role is None:
        return "401"
    if role not in rule.roles:
        return "403"
    if method != "GET":
        return "past the rule"
    kinds = {TENANT_PARAMETERS[service].get(name) for name in re.findall(r"{(\w+)}", path)}
    if role in OWNER and role in kinds and tenant != OWNER[role]:
        return "404"
    return "200" if service in SEEDED else "past the rule"


async def seed(running: dict[str, RunningService]) -> dict[str, str]:
    """KAI's order, shipment and webhook; IKM-001's entry, capacity, reservation, certificate and lot; IKM-002 too."""
    capacity, quality, orders = running["capacity"].http, running["quality"].http, running["orders"].http
    members = [
        {"code": code, "name": f"CV {code}", "village": "Batur", "product_families": [COMPOSITE], "owner": f"Pak {code}",
         "npwp": "3310012345678901"}
        for code in ("IKM-001", "IKM-002")
    ]  # fmt: skip
    await register_foundries(running["capacity"], running["quality"], *members)
    standard = {
        "kind": "standard",
        "product_family": COMPOSITE,
        "weekly_units": 400,
        "from_week": "2027-W01",
        "reason": "declared",
    }
    assert (await capacity.post("/v1/foundries/IKM-001/capacity-changes", json=standard)).status_code == 201
    hold = {"foundry_code": "IKM-001", "product_family": COMPOSITE, "week": "2027-W02", "quantity": 100}
    reservation = await capacity.post("/v1/reservations", json=hold, auth=as_("planner"))
    assert reservation.status_code == 201, reservation.text
    certificate = await quality.post(
        "/v1/certificates",
        json={"foundry_code": "IKM-001", "kind": "ISO9001", "number": "ISO/001", "issuer": "TUV", "valid_from": "2026-01-01",
              "valid_until": "2028-12-31"},
        auth=as_("qa_officer"),
    )  # fmt: skip
    assert certificate.status_code == 201, certificate.text
    lot = await quality.post(
        "/v1/lots", json={"foundry_code": "IKM-001", "item_code": "BB-COMP-K", "quantity": 200}, auth=as_("foundry", "IKM-001")
    )
    assert lot.status_code == 201, lot.text
    order = await orders.post(
        "/v1/purchase-orders", json=purchase_order("KAI"), headers={"Idempotency-Key": "m-1"}, auth=as_("buyer", "KAI")
    )
    assert order.status_code == 201, order.text
    webhook = await orders.put("/v1/buyers/KAI/webhook", json={"url": "http://127.0.0.1:9/hooks"}, auth=as_("buyer", "KAI"))
    assert webhook.status_code == 200, webhook.text
    shipment_id = "sh_matrix_kai"
    async with running["orders"].runtime.sessions.begin() as session:  # type: ignore[union-attr]
        # A shipment needs passed lots to be written through the API; its row alone is what the reads look at.
        await session.execute(
            orders_store.shipments.insert().values(
                id=shipment_id, order_id=order.json()["id"], buyer_code="KAI", surat_jalan_number="SJ/M/1", site_code="BY-YK",
                vehicle_plate="AD 1 KT", driver_name=None, status="prepared", created_at=running["orders"].runtime.clock.now(),
            )
        )  # fmt: skip
    return {
        "order_id": order.json()["id"],
        "shipment_id": shipment_id,
        "buyer_code": "KAI",
        "code": "IKM-001",
        "foundry_code": "IKM-001",
        "reservation_id": reservation.json()["id"],
        "certificate_id": certificate.json()["id"],
        "lot_code": lot.json()["lot_code"],
        "item_code": "BB-COMP-K",
        "site_code": "BY-YK",
    }


def purchase_order(buyer: str, po_number: str = "KAI/PO/M/1") -> dict[str, Any]:
    site = {"KAI": "BY-YK", "INKA": "INKA-MN"}[buyer]  # an order delivers to its buyer's own sites
    return {
        "buyer_code": buyer,
        "po_number": po_number,
        "issued_on": "2026-11-24",
        "lines": [
            {"line_no": 1, "item_code": "BB-COMP-K", "quantity": 300, "unit_price": 203700,
             "deliveries": [{"due_date": "2027-03-26", "quantity": 300, "site_code": site}]}
        ],
    }  # fmt: skip


def fill(path: str, ids: dict[str, str]) -> str:
    return re.sub(r"{(\w+)}", lambda m: ids.get(m.group(1), "nothing-here"), path)


def check(answer: httpx.Response, want: str, where: str) -> str | None:
    status = answer.status_code
    if want == "past the rule":
        return None if status not in (401, 403) else f"{where}: {status}, expected past the rule"
    if str(status) != want:
        return f"{where}: {status}, expected {want}: {answer.text[:200]}"
    challenged = answer.headers.get("content-type") == PROBLEM_JSON and answer.headers.get("www-authenticate", "").startswith(
        "Bearer"
    )
    if status in (401, 403) and not challenged:
        return f"{where}: {status} without problem+json and WWW-Authenticate"
    return None


async def test_every_route_answers_every_role_and_tenant_as_its_rule_declares(make_settings):
    settings = make_settings(**RECEIVER_ON_LOOPBACK)  # the seeded webhook points at loopback
    async with (
        run_services(settings, "capacity", "quality", "orders") as running,
        run_service(create_identity, settings) as identity,
    ):
        services = {**running, "identity": identity}
        ids = await seed(running)
        of_identity = await identity_callers(identity)
        problems: list[str] = []
        calls = 0
        covered: set[tuple[str, str, str]] = set()
        for reads in (True, False):  # every read first: the changes may move what the reads look at
            for service, svc in services.items():
                for method, path, rule in routes_of(svc.app):
                    if (method == "GET") != reads:
                        continue
                    assert rule is not None, f"{service} {method} {path} declares no rule"
                    covered.add((service, method, path))
                    url = fill(path, ids)
                    body = {} if method in ("POST", "PUT", "PATCH") else None
                    for caller in CALLERS:
                        answer = await svc.http.request(
                            method,
                            url,
                            params=QUERIES.get((service, path)),
                            json=body,
                            auth=of_identity[caller] if service == "identity" else auth_of(caller),
                        )
                        calls += 1
                        want = expected(service, method, path, rule, caller)
                        if problem := check(answer, want, f"{service} {method} {path} as {caller}"):
                            problems.append(problem)
        for service, svc in services.items():  # the documentation, for anyone (its "Authorize" button gets the token)
            for path in ("/openapi.json", "/docs", "/redoc"):
                if (answer := await svc.http.get(path, auth=ANONYMOUS)).status_code != 200:
                    problems.append(f"{service} GET {path} as anonymous: {answer.status_code}")
        assert not problems, "\n".join(problems)
        assert calls > 400  # the matrix really ran over the routes
        assert ("orders", "POST", "/v1/buyers/{buyer_code}/webhook/rotate-secret") in covered
        assert {
            ("orders", m, p)
            for m, p in (
                ("GET", "/v1/buyers"),
                ("POST", "/v1/buyers"),
                ("PATCH", "/v1/buyers/{buyer_code}"),
                ("GET", "/v1/sites/{site_code}"),
                ("POST", "/v1/sites"),
                ("PATCH", "/v1/sites/{site_code}"),
            )
        } <= covered
        assert {(service, "GET", "/v1/audit") for service in SEEDED} <= covered


async def test_lists_hold_only_the_tenants_own_and_identities_only_for_admin_and_planner(make_settings):
    settings = make_settings(**RECEIVER_ON_LOOPBACK)  # the seeded webhook points at loopback
    async with run_services(settings, "capacity", "quality", "orders") as running:
        await seed(running)
        orders, capacity, quality = running["orders"].http, running["capacity"].http, running["quality"].http
        inka = await orders.post(
            "/v1/purchase-orders",
            json=purchase_order("INKA", "INKA/PO/M/1"),
            headers={"Idempotency-Key": "m-2"},
            auth=as_("buyer", "INKA"),
        )
        assert inka.status_code == 201, inka.text

        async def buyers_seen(auth: httpx.Auth, **params: str) -> list[str]:
            page = (await orders.get("/v1/purchase-orders", params=params, auth=auth)).json()
            return sorted(o["buyer_code"] for o in page["items"])

        assert await buyers_seen(as_("planner")) == ["INKA", "KAI"]
        assert await buyers_seen(as_("buyer", "KAI")) == ["KAI"]
        assert await buyers_seen(as_("buyer", "KAI"), buyer_code="INKA") == []
        assert await buyers_seen(as_("buyer", "INKA")) == ["INKA"]

        async def members_seen(auth: httpx.Auth) -> dict[str, tuple[Any, Any]]:
            page = (await capacity.get("/v1/foundries", auth=auth)).json()
            return {f["code"]: (f["owner"], f["npwp"]) for f in page["items"]}

        for role in ("admin", "planner"):
            assert (await members_seen(as_(role)))["IKM-001"] == ("Pak IKM-001", "3310012345678901")
        assert await members_seen(as_("qa_officer")) == {"IKM-001": (None, None), "IKM-002": (None, None)}
        assert await members_seen(as_("foundry", "IKM-002")) == {"IKM-002": (None, None)}
        one = (await capacity.get("/v1/foundries/IKM-001", auth=as_("foundry", "IKM-001"))).json()
        assert (one["owner"], one["npwp"]) == (None, None)
        reservations = (await capacity.get("/v1/reservations", auth=as_("foundry", "IKM-002"))).json()
        assert reservations["items"] == []
        own = (await capacity.get("/v1/reservations", auth=as_("foundry", "IKM-001"))).json()["items"]  # orders' plan may add
        assert own and {r["foundry_code"] for r in own} == {"IKM-001"}

        lots = (await quality.get("/v1/lots", auth=as_("foundry", "IKM-002"))).json()
        assert lots["items"] == [] and (await quality.get("/v1/lots", auth=as_("lab"))).json()["total"] == 1
        assert (await quality.get("/v1/certificates", auth=as_("foundry", "IKM-002"))).json() == []
        assert [c["foundry_code"] for c in (await quality.get("/v1/certificates", auth=as_("foundry", "IKM-001"))).json()] == [
            "IKM-001"
        ]
        statuses = (await quality.get("/v1/quality-status", auth=as_("foundry", "IKM-002"))).json()
        assert [s["foundry_code"] for s in statuses] == ["IKM-002"]


async def test_changes_to_another_tenants_resources_are_refused_and_change_nothing(make_settings):
    settings = make_settings(**RECEIVER_ON_LOOPBACK)  # the seeded webhook points at loopback
    async with run_services(settings, "capacity", "quality", "orders") as running:
        ids = await seed(running)
        orders, capacity, quality = running["orders"].http, running["capacity"].http, running["quality"].http
        inka, other_member = as_("buyer", "INKA"), as_("foundry", "IKM-002")
        order_id = ids["order_id"]

        as_inka = await orders.post(
            "/v1/purchase-orders", json=purchase_order("KAI", "KAI/PO/M/2"), headers={"Idempotency-Key": "m-3"}, auth=inka
        )
        assert as_inka.status_code == 403 and as_inka.headers["www-authenticate"].startswith("Bearer")
        assert (
            await orders.post(f"/v1/purchase-orders/{order_id}/cancel", json={"reason": "not mine"}, auth=inka)
        ).status_code == 404
        hijack = {"url": "http://127.0.0.1:9/elsewhere"}
        assert (await orders.put("/v1/buyers/KAI/webhook", json=hijack, auth=inka)).status_code == 404
        assert (await orders.post("/v1/buyers/KAI/webhook/ping", auth=inka)).status_code == 404
        assert (await orders.post("/v1/buyers/KAI/webhook/rotate-secret", auth=inka)).status_code == 404
        for staff_only in ("reject", "replan"):
            refused = await orders.post(
                f"/v1/purchase-orders/{order_id}/{staff_only}", json={"reason": "x"}, auth=as_("buyer", "KAI")
            )
            assert refused.status_code == 403
        after = (await orders.get(f"/v1/purchase-orders/{order_id}")).json()  # planning moves on meanwhile, nothing else
        assert after["status"] not in ("cancelled", "rejected") and after["status_reason"] is None
        webhook = (await orders.get("/v1/buyers/KAI/webhook")).json()
        assert webhook["url"] == "http://127.0.0.1:9/hooks" and webhook["previous_secret_expires_at"] is None  # not rotated

        change = {
            "kind": "standard",
            "product_family": COMPOSITE,
            "weekly_units": 1,
            "from_week": "2027-W01",
            "reason": "declared",
        }
        assert (await capacity.post("/v1/foundries/IKM-001/capacity-changes", json=change, auth=other_member)).status_code == 404
        assert (await capacity.get("/v1/foundries/IKM-001/capacity-changes")).json()["total"] == 1
        resign = await capacity.patch(
            "/v1/foundries/IKM-001", json={"membership_status": "resigned"}, auth=as_("foundry", "IKM-001")
        )
        assert resign.status_code == 403

        lot = {"foundry_code": "IKM-001", "item_code": "BB-COMP-K", "quantity": 10}
        assert (await quality.post("/v1/lots", json=lot, auth=other_member)).status_code == 403
        override = {"status": "suspended", "reason": "made up"}
        for role in ("admin", "planner", "lab"):
            path = "/v1/foundries/IKM-001/quality-status/override"
            assert (await quality.put(path, json=override, auth=as_(role))).status_code == 403, role
        assert (await quality.get("/v1/foundries/IKM-001/quality-status")).json()["status"] != "suspended"
        assert (await quality.get("/v1/lots", params={"foundry_code": "IKM-001"})).json()["total"] == 1


# --- the console ------------------------------------------------------------------------------------------------------

# What the console's path parameters name: the seeded KAI order and shipment, IKM-001's member page and lot, an
# item of the catalogue (no tenant's).
CONSOLE_PATHS = {"code": "IKM-001", "document": "surat-jalan", "what": "orders", "item_code": "BB-COMP-K"}


class ServicesByHost(httpx.AsyncBaseTransport):
    """The console's HTTP client reaching the in-process services by host name (`http://orders`, …)."""

    def __init__(self, running: dict[str, RunningService]) -> None:
        self.transports = {name: httpx.ASGITransport(app=svc.app) for name, svc in running.items()}

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return await self.transports[request.url.host].handle_async_request(request)


def console_expected(method: str, path: str, rule: RouteRule, caller: str) -> str:
    """As the console's table of actions says (`ACTIONS` in services/console/domain.py): no one signed in goes to
    the login page (API calls get 401; a form post without the page's CSRF token is refused before that, 403), a
    role the page is not for gets 403, a foundry sees only its own member
    page and lots (another's is 404), the home page sends a foundry and a laboratory to theirs (303)."""
    role, tenant = CALLERS[caller]
    if rule.public:  # health, metrics, the login page; posts (sign-in, sign-out, language) need the page's CSRF token
        return "200" if method == "GET" else "answered"
    if role is None:
        if method == "POST":
            return "403"
        return "401" if path.startswith("/v1/") or path == "/live" else "303 /login"
    if role not in rule.roles:
        return "403"
    if method != "GET":
        return "past the rule"
    if role == "foundry" and tenant != OWNER["foundry"] and ("{code}" in path or "{lot_code}" in path):
        return "404"
    if (path == "/" and role in ("foundry", "lab")) or (path == "/members" and role == "foundry"):
        return "303"
    return "200"


def console_check(answer: httpx.Response, want: str, where: str) -> str | None:
    status = answer.status_code
    if want == "answered":
        return None if status < 500 else f"{where}: {status}"
    if want == "past the rule":
        signed_out = status in (401, 403) or answer.headers.get("location", "").startswith("/login")
        return f"{where}: {status} {answer.headers.get('location')}, expected past the rule" if signed_out else None
    if want == "303 /login":
        ok = status == 303 and answer.headers["location"].startswith("/login?next=")
        return None if ok else f"{where}: {status} {answer.headers.get('location')}, expected a redirect to /login"
    if str(status) != want:
        return f"{where}: {status}, expected {want}: {answer.text[:200]}"
    if want == "303" and answer.headers["location"].startswith("/login"):
        return f"{where}: sent to sign in, expected the person's own home page"
    return None


async def test_every_console_page_and_action_answers_every_role_and_tenant_as_the_console_declares(make_settings):
    from services.console.app import create_app as create_console

    settings = make_settings(**RECEIVER_ON_LOOPBACK)
    console_settings = settings.model_copy(update={f"{name}_url": f"http://{name}" for name in ("orders", "capacity", "quality")})
    async with (
        run_services(settings, "capacity", "quality", "orders") as running,
        run_service(create_console, console_settings, auth=ANONYMOUS) as console,
    ):
        ids = {**await seed(running), **CONSOLE_PATHS}
        await console.runtime.state["http"].aclose()
        console.runtime.state["http"] = httpx.AsyncClient(transport=ServicesByHost(running), timeout=30)
        problems: list[str] = []
        calls = 0
        for reads in (True, False):  # every page first: the actions may move what the pages show
            for method, path, rule in routes_of(console.app):
                if (method == "GET") != reads:
                    continue
                assert rule is not None, f"console {method} {path} declares no rule"
                for caller in CALLERS:
                    want = console_expected(method, path, rule, caller)
                    if path == "/live" and want == "200":
                        continue  # an endless stream; who may follow it is tests/unit/test_console_stream.py's
                    answer = await console.http.request(
                        method, fill(path, ids), data={} if method == "POST" else None, auth=auth_of(caller)
                    )
                    calls += 1
                    if problem := console_check(answer, want, f"console {method} {path} as {caller}"):
                        problems.append(problem)
        await console.runtime.state["http"].aclose()
        assert not problems, "\n".join(problems)
        assert calls > 200
