"""The console's buyers page: orders' buyers with their delivery sites, inactive ones too, and a buyer's NPWP only
when orders tells it to the person. Orders is stood in for by an httpx mock transport."""

from __future__ import annotations

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

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "identity.test":
            return super().handle(request)
        self.calls.append(request)
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
    assert f"NPWP {NPWP}" in text_of(found["KAI"]) and "NPWP" not in found["OLD"]


async def test_only_the_staff_orders_lets_read_buyers_find_the_page(console: httpx.AsyncClient, services: Orders):
    for who in ("lab", "ikm-001"):
        await sign_in(console, who)
        page = await console.get("/buyers")
        assert page.status_code == 403, who
        assert 'href="/buyers"' not in (await console.get("/items")).text, who
        console.cookies.clear()
    assert not [r for r in services.calls if r.url.path in ("/v1/buyers", "/v1/sites")]
