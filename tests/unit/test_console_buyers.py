"""The console's buyers page: orders' buyers with their delivery sites, inactive ones too, and a buyer's NPWP only
when orders tells it to the person; administrators' forms that add and change buyers and sites. Orders is stood in for
by an httpx mock transport."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fixtures.tokens import TokenMint
from tests.unit.test_console_login import Services, console_over, settings_for, sign_in, token_in

BUYERS = [
    {"code": "OLD", "legal_name": "PT Pembeli Lama", "npwp": None, "active": False},
    {"code": "KAI", "legal_name": "PT Kereta Api Indonesia (Persero)", "npwp": None, "active": True},
]
SITES = [
    {"code": "BY-YK", "name": "Balai Yasa Yogyakarta", "buyer_code": "KAI", "city": "Yogyakarta", "address": "Jl. Kusbini 1",
     "active": True},
    {"code": "BY-GONE", "name": "Gudang tutup", "buyer_code": "KAI", "city": "Madiun", "address": None, "active": False},
    {"code": "BY-MN", "name": "Balai Yasa Manggarai", "buyer_code": "KAI", "city": "Jakarta", "address": None, "active": True},
]  # fmt: skip
NPWP = "01.234.567.8-901.000"


class Orders(Services):
    """Orders' buyers and delivery sites, the NPWP told to admins only, as orders does."""

    def __init__(self, mint: TokenMint) -> None:
        super().__init__(mint)
        self.people["admin"] = {"roles": ["admin"]}
        self.people["lab"] = {"roles": ["lab"]}
        self.writes: list[httpx.Request] = []  # what the console asked orders to change
        self.refusal: tuple[int, dict[str, Any]] | None = None  # orders' answer to every write, when set

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "identity.test":
            return super().handle(request)
        self.calls.append(request)
        if request.method != "GET":
            self.writes.append(request)
            if self.refusal:
                return httpx.Response(self.refusal[0], json=self.refusal[1])
            return httpx.Response(201 if request.method == "POST" else 200, json=json.loads(request.content))
        if request.url.path == "/v1/buyers":
            admin = any(f"Bearer {t}" == request.headers["authorization"] for t in self.admin_tokens())
            return httpx.Response(200, json=[{**b, "npwp": NPWP if admin and b["code"] == "KAI" else None} for b in BUYERS])
        if request.url.path == "/v1/sites":
            return httpx.Response(200, json=SITES)
        return httpx.Response(404, json={"title": "Not found", "status": 404})

    def admin_tokens(self) -> list[str]:
        return [t for t in self.issued if "admin" in _claims(t).get("roles", [])]


def _claims(token: str) -> dict[str, Any]:
    import base64
    import json

    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def mint() -> TokenMint:
    return TokenMint()


@pytest.fixture
def services(mint: TokenMint) -> Orders:
    return Orders(mint)


@pytest.fixture
async def console(tmp_path: Any, mint: TokenMint, services: Orders) -> AsyncIterator[httpx.AsyncClient]:
    async with console_over(services.handle, mint, settings_for(tmp_path)) as client:
        yield client


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)).strip()


def sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section class="card wide buyer" data-buyer="([^"]+)"(.*?)</section>', page, re.S))


def site_rows(section: str) -> dict[str, str]:
    return {code: text_of(row) for code, row in re.findall(r'<tr data-site="([^"]+)">(.*?)</tr>', section, re.S)}


async def test_the_buyers_page_lists_buyers_active_first_with_their_delivery_sites(console: httpx.AsyncClient, services: Orders):
    await sign_in(console)
    page = await console.get("/buyers")
    assert page.status_code == 200 and 'href="/buyers" aria-current="page"' in page.text
    assert {r.url.path for r in services.calls} == {"/v1/buyers", "/v1/sites"}
    assert all(r.headers["authorization"] == f"Bearer {services.issued[0]}" for r in services.calls)
    found = sections(page.text)
    assert list(found) == ["KAI", "OLD"]  # the inactive buyer last
    assert "KAI · PT Kereta Api Indonesia (Persero) Aktif" in text_of(found["KAI"])
    assert "PT Pembeli Lama Tidak aktif" in text_of(found["OLD"]) and "Belum ada lokasi pengiriman." in text_of(found["OLD"])
    sites = site_rows(found["KAI"])
    assert list(sites) == ["BY-MN", "BY-YK", "BY-GONE"]  # inactive sites last
    assert sites["BY-YK"] == "BY-YK Balai Yasa Yogyakarta Yogyakarta Jl. Kusbini 1 Aktif"
    assert sites["BY-GONE"] == "BY-GONE Gudang tutup Madiun – Tidak aktif"
    assert "NPWP" not in page.text  # orders tells a planner no NPWP
    await console.post("/language", data={"csrftoken": token_in(page.text), "locale": "en", "back": "/buyers"})
    english = sections((await console.get("/buyers")).text)
    assert site_rows(english["KAI"])["BY-GONE"].endswith("Inactive") and "Delivery sites of KAI" in english["KAI"]


async def test_an_administrator_sees_the_npwp_orders_tells_them(console: httpx.AsyncClient):
    await sign_in(console, "admin")
    found = sections((await console.get("/buyers")).text)
    assert f"NPWP {NPWP}" in text_of(found["KAI"]) and "<dt>NPWP</dt>" not in found["OLD"]


async def test_only_the_staff_orders_lets_read_buyers_find_the_page(console: httpx.AsyncClient, services: Orders):
    for who in ("lab", "ikm-001"):
        await sign_in(console, who)
        page = await console.get("/buyers")
        assert page.status_code == 403, who
        assert 'href="/buyers"' not in (await console.get("/items")).text, who
        console.cookies.clear()
    assert not [r for r in services.calls if r.url.path in ("/v1/buyers", "/v1/sites")]


# --- the administrators' forms ------------------------------------------------------------------------------------


def form_of(page: str, form_id: str) -> str:
    found = re.search(rf'<form[^>]*id="{form_id}".*?</form>', page, re.S)
    assert found, f"no form {form_id}"
    return found.group(0)


def key_in(form: str) -> str:
    found = re.search(r'name="key" value="([0-9a-f]{32})"', form)
    assert found, "the form carries no idempotency key"
    return found.group(1)


async def test_an_administrator_adds_a_delivery_site_to_a_buyer_once_per_form(console: httpx.AsyncClient, services: Orders):
    await sign_in(console, "admin")
    page = await console.get("/buyers")
    form = form_of(sections(page.text)["KAI"], "site-new-KAI-form")
    assert 'action="/buyers/KAI/sites"' in form and 'name="active" value="on" checked' in form
    key = key_in(form)
    data = {"csrftoken": token_in(page.text), "key": key, "code": "BY-PUB", "name": "Balai Yasa Pulubrayan", "city": "Medan",
            "address": " ", "active": "on"}  # fmt: skip
    for _ in range(2):  # a double click adds it once
        answer = await console.post("/buyers/KAI/sites", data=data)
        assert answer.status_code == 303 and answer.headers["location"] == "/buyers"
    assert len(services.writes) == 1
    sent = services.writes[0]
    assert (sent.method, sent.url.path, sent.headers["idempotency-key"]) == ("POST", "/v1/sites", key)
    expired = await console.post("/buyers/KAI/sites", data={**data, "csrftoken": "", "key": "b" * 32})
    assert expired.status_code == 403 and "Formulir sudah kedaluwarsa" in expired.text and len(services.writes) == 1
    assert json.loads(sent.content) == {"code": "BY-PUB", "buyer_code": "KAI", "name": "Balai Yasa Pulubrayan", "city": "Medan",
                                        "address": None, "active": True}  # fmt: skip


async def test_an_administrator_changes_a_site_and_a_buyer_from_forms_that_start_from_what_orders_holds(
    console: httpx.AsyncClient, services: Orders
):
    await sign_in(console, "admin")
    page = await console.get("/buyers")
    kai = sections(page.text)["KAI"]
    site = form_of(kai, "site-BY-YK-form")
    assert 'value="Balai Yasa Yogyakarta"' in site and 'value="Jl. Kusbini 1"' in site and "checked" in site
    assert 'name="code"' not in site and "checked" not in form_of(kai, "site-BY-GONE-form")
    data = {"csrftoken": token_in(page.text), "key": key_in(site), "name": "Balai Yasa Yogyakarta", "city": "Yogyakarta",
            "address": ""}  # fmt: skip
    answer = await console.post("/sites/BY-YK", data=data)  # the box left unticked: no new order names it
    assert answer.status_code == 303
    sent = services.writes[-1]
    assert (sent.method, sent.url.path, sent.headers["idempotency-key"]) == ("PATCH", "/v1/sites/BY-YK", data["key"])
    assert json.loads(sent.content) == {"name": "Balai Yasa Yogyakarta", "city": "Yogyakarta", "address": None, "active": False}
    buyer = form_of(kai, "buyer-KAI-form")
    assert f'value="{NPWP}"' in buyer and 'value="PT Kereta Api Indonesia (Persero)"' in buyer
    data = {"csrftoken": token_in(page.text), "key": key_in(buyer), "legal_name": "PT Kereta Api Indonesia (Persero) ",
            "npwp": "0010001234093000", "active": "on"}  # fmt: skip
    assert (await console.post("/buyers/KAI", data=data)).status_code == 303
    sent = services.writes[-1]
    assert (sent.method, sent.url.path, sent.headers["idempotency-key"]) == ("PATCH", "/v1/buyers/KAI", data["key"])
    assert json.loads(sent.content) == {
        "legal_name": "PT Kereta Api Indonesia (Persero)",
        "npwp": "0010001234093000",
        "active": True,
    }


async def test_orders_refusal_is_shown_next_to_its_field_in_the_persons_language(console: httpx.AsyncClient, services: Orders):
    await sign_in(console, "admin")
    page = await console.get("/buyers")
    key = key_in(form_of(page.text, "buyer-new-form"))
    services.refusal = (422, {"title": "Request is invalid", "status": 422, "errors": [
        {"field": "body.npwp", "message": "String should match pattern", "type": "string_pattern_mismatch"}]})  # fmt: skip
    data = {
        "csrftoken": token_in(page.text),
        "key": key,
        "code": "PELNI",
        "legal_name": "PT Pelni",
        "npwp": "123",
        "active": "on",
    }
    refused = await console.post("/buyers", data=data)
    assert refused.status_code == 422
    form = form_of(refused.text, "buyer-new-form")
    assert '<p class="error" id="err-npwp">Formatnya tidak sesuai.</p>' in form and 'aria-describedby="err-npwp"' in form
    assert key_in(form) == key and 'value="PT Pelni"' in form  # the corrected form goes with the same key
    assert "err-npwp" not in form_of(refused.text, "buyer-KAI-form")  # only the refused form says so
    await console.post("/language", data={"csrftoken": token_in(page.text), "locale": "en", "back": "/buyers"})
    refused = await console.post("/buyers", data=data, headers={"hx-request": "true"})  # htmx: the form alone, a 200
    assert refused.status_code == 200 and refused.text.startswith('<form class="card"') and "<h1>" not in refused.text
    assert '<p class="error" id="err-npwp">Not in the expected format.</p>' in refused.text
    # A site code orders has already: said next to the code, on that buyer's form.
    services.refusal = (409, {"title": "Conflict", "status": 409, "detail": "delivery site BY-YK exists already"})
    data = {"csrftoken": token_in(page.text), "key": "c" * 32, "code": "BY-YK", "name": "X", "city": "Y", "active": "on"}
    refused = await console.post("/buyers/KAI/sites", data=data, headers={"hx-request": "true"})
    assert 'id="site-new-KAI-form"' in refused.text
    assert '<p class="error" id="err-code">This code is taken already; change the one that has it instead.</p>' in refused.text


async def test_a_planner_sees_no_form_and_their_posts_are_refused_without_asking_orders(
    console: httpx.AsyncClient, services: Orders
):
    await sign_in(console)
    page = await console.get("/buyers")
    assert page.status_code == 200 and 'method="post" action="/buyers' not in page.text and 'action="/sites' not in page.text
    token = token_in(page.text)
    posts = {"/buyers": {"code": "X1", "legal_name": "X"}, "/buyers/KAI": {"legal_name": "X"},
             "/buyers/KAI/sites": {"code": "BY-X", "name": "X", "city": "Y"}, "/sites/BY-YK": {"name": "X", "city": "Y"}}  # fmt: skip
    for path, data in posts.items():
        refused = await console.post(path, data={"csrftoken": token, "key": "a" * 32, **data})
        assert refused.status_code == 403, path
    assert not services.writes
