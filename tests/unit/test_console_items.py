"""The console's item catalogue pages: quality's items with their terms in the person's language, and one item with
what each of its versions changed and its specification's parameters and limits; QA officers' and admins' forms that
add an item, publish a version of one and retire one. Quality is stood in for by an httpx mock transport."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.console.domain import TermChange, item_history
from tests.fixtures.tokens import TokenMint
from tests.unit.test_console_login import Services, console_over, settings_for, sign_in, token_in

QUALITY = "http://quality.test"


def item(code: str, version: int = 1, **terms: Any) -> dict[str, Any]:
    return {
        "code": code, "version": version, "name_id": "Blok rem komposit tipe K", "name_en": "Composite brake block, type K",
        "product_family": "BRAKE_BLOCK_COMPOSITE", "unit": "pcs", "min_lot": 1200, "required_certificates": ["SNI", "ISO9001"],
        "min_tkdn_percent": 25.0, "sampling": {"inspection_level": "II", "aql": 2.5}, "retired": False,
        "published_at": f"2026-12-0{version}T03:00:00Z", **terms,
    }  # fmt: skip


BB_COMP_K = [item("BB-COMP-K"), item("BB-COMP-K", 2, min_lot=1500, sampling={"inspection_level": "II", "aql": 1.0})]
SPECIFICATIONS = [
    {"item_code": "BB-COMP-K", "description": "Blok rem komposit tipe K", "product_family": "BRAKE_BLOCK_COMPOSITE",
     "version": version, "sampling": {"inspection_level": "II", "aql": 2.5}, "note": note,
     "effective_from": "2026-12-01T03:00:00Z",
     "parameters": [
         {"code": "friction_coefficient", "name": "Friction coefficient μ (mean)", "unit": "", "rule": "target",
          "minimum": None, "maximum": None, "target": target, "tolerance": 0.04, "possible_min": 0, "possible_max": 1.5,
          "acceptance": f"{target} ± 0.04"},
         {"code": "density", "name": "Density (ASTM D792)", "unit": "g/cm³", "rule": "range", "minimum": 1.7,
          "maximum": 2.4, "target": None, "tolerance": None, "possible_min": 0.1, "possible_max": 25, "acceptance": "1.7–2.4"},
         {"code": "thermal_fade", "name": "Thermal fade at 400 °C", "unit": "%", "rule": "maximum", "minimum": None,
          "maximum": 1250, "target": None, "tolerance": None, "possible_min": None, "possible_max": None, "acceptance": "≤ 1250"},
     ]}
    for version, target, note in ((1, 0.25, "Defaults"), (2, 0.26, "KAI asked for a tighter friction band"))
]  # fmt: skip


class Catalogue(Services):
    """Quality's item catalogue and specifications, as the console sees them."""

    def __init__(self, mint: TokenMint) -> None:
        super().__init__(mint)
        self.people["lab"] = {"roles": ["lab"]}
        self.people["qa"] = {"roles": ["qa_officer"]}
        self.writes: list[httpx.Request] = []  # what the console asked quality to change
        self.refusal: tuple[int, dict[str, Any]] | None = None  # quality's answer to every write, when set
        self.items = [item("BB-CI", name_id="Blok rem besi cor", name_en="Cast-iron brake block", min_tkdn_percent=None,
                           product_family="BRAKE_BLOCK_CAST_IRON"),
                      item("BB-OLD", retired=True, name_id="Blok rem lama", name_en="Old brake block", required_certificates=[]),
                      {**BB_COMP_K[-1]}]  # fmt: skip

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.url.host == "identity.test":
            return super().handle(request)
        self.calls.append(request)
        path = request.url.path
        if request.method != "GET":
            self.writes.append(request)
            if self.refusal:
                return httpx.Response(self.refusal[0], json=self.refusal[1])
            return httpx.Response(200 if request.method == "DELETE" else 201, json=BB_COMP_K[-1])
        if path == "/v1/items":
            return httpx.Response(200, json=[i for i in self.items if request.url.params.get("retired") or not i["retired"]])
        if path == "/v1/items/BB-COMP-K":
            return httpx.Response(200, json={**BB_COMP_K[-1], "versions": BB_COMP_K})
        if path == "/v1/specifications/BB-COMP-K/versions":
            return httpx.Response(200, json=SPECIFICATIONS)
        return httpx.Response(404, json={"title": "Not found", "status": 404})


@pytest.fixture
def mint() -> TokenMint:
    return TokenMint()


@pytest.fixture
def services(mint: TokenMint) -> Catalogue:
    return Catalogue(mint)


@pytest.fixture
async def console(tmp_path: Any, mint: TokenMint, services: Catalogue) -> AsyncIterator[httpx.AsyncClient]:
    async with console_over(services.handle, mint, settings_for(tmp_path, quality_url=QUALITY)) as client:
        yield client


async def english(console: httpx.AsyncClient, path: str) -> httpx.Response:
    page = await console.get(path)
    await console.post("/language", data={"csrftoken": token_in(page.text), "locale": "en", "back": path})
    return await console.get(path)


def rows(page: str) -> dict[str, str]:
    """The items table's rows as text, by item code."""
    found = re.findall(r'<tr data-item="([^"]+)">(.*?)</tr>', page, re.S)
    return {code: re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row)).strip() for code, row in found}


async def test_the_catalogue_lists_every_item_active_first_with_its_terms_in_the_persons_language(
    console: httpx.AsyncClient, services: Catalogue
):
    await sign_in(console)
    page = await console.get("/items")
    assert page.status_code == 200 and 'href="/items" aria-current="page"' in page.text
    asked = [r for r in services.calls if r.url.path == "/v1/items"]
    assert asked[0].url.params["retired"] == "true" and asked[0].headers["authorization"] == f"Bearer {services.issued[0]}"
    found = rows(page.text)
    assert list(found) == ["BB-CI", "BB-COMP-K", "BB-OLD"]  # the retired item last
    assert found["BB-COMP-K"] == "BB-COMP-K Blok rem komposit tipe K Blok rem komposit buah 1.500 SNI, ISO9001 25% 2 Aktif"
    assert found["BB-CI"].endswith("Blok rem besi cor Blok rem besi cor buah 1.200 SNI, ISO9001 – 1 Aktif")
    assert found["BB-OLD"].endswith("buah 1.200 – 25% 1 Dihentikan")
    found = rows((await english(console, "/items")).text)
    assert (
        found["BB-COMP-K"]
        == "BB-COMP-K Composite brake block, type K Composite brake blocks pieces 1,500 SNI, ISO9001 25% 2 Active"
    )
    assert found["BB-OLD"].endswith("Retired")


async def test_an_item_shows_what_each_version_changed_and_its_specification_with_limits(
    console: httpx.AsyncClient, services: Catalogue
):
    await sign_in(console, "ikm-001")  # quality lets members read the catalogue
    page = await console.get("/items/BB-COMP-K")
    assert page.status_code == 200, page.text
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page.text))
    assert "BB-COMP-K · Blok rem komposit tipe K" in text
    assert (
        "Lot minimum: 1.200 → 1.500" in text
        and "Aturan pengambilan sampel: tingkat inspeksi II, AQL 2,5 → tingkat inspeksi II, AQL 1" in text
    )
    assert "Versi pertama." in text
    # Newest specification first, in force; parameters in Indonesian, limits written as Indonesians write them.
    assert text.index("Versi 2") < text.index("Versi 1") and "KAI asked for a tighter friction band" in text
    assert "Koefisien gesek μ (rata-rata)" in text and "0,26 ± 0,04" in text and "1,7 – 2,4" in text and "≤ 1.250" in text
    assert "Thermal fade at 400 °C" in text  # a parameter a QA officer added keeps the name they gave it
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", (await english(console, "/items/BB-COMP-K")).text))
    assert "Minimum lot: 1,200 → 1,500" in text and "0.26 ± 0.04" in text and "≤ 1,250" in text and "First version." in text


async def test_an_unknown_item_is_not_found_and_a_malformed_code_is_not_asked_for(
    console: httpx.AsyncClient, services: Catalogue
):
    await sign_in(console)
    assert (await console.get("/items/BB-NONE")).status_code == 404
    assert (await console.get("/items/..%2Fv1")).status_code == 404
    assert (await console.get("/items/bb-comp-k")).status_code == 404
    assert [r.url.path for r in services.calls] == ["/v1/items/BB-NONE", "/v1/specifications/BB-NONE/versions"]


async def test_every_role_quality_lets_read_items_finds_the_page(console: httpx.AsyncClient):
    for who in ("planner", "lab", "ikm-001"):
        await sign_in(console, who)
        assert (await console.get("/items")).status_code == 200, who
        assert 'href="/items"' in (await console.get("/items/BB-COMP-K")).text, who
        console.cookies.clear()


def test_a_version_changes_the_terms_that_differ_from_the_version_before():
    retired = {**BB_COMP_K[-1], "version": 3, "retired": True}
    history = item_history([BB_COMP_K[1], retired, BB_COMP_K[0]])
    assert [(v.version, v.retired) for v in history] == [(3, True), (2, False), (1, False)]
    assert history[0].changes == () and history[2].changes == ()
    assert history[1].changes == (
        TermChange("min_lot", 1200, 1500),
        TermChange("sampling", {"inspection_level": "II", "aql": 2.5}, {"inspection_level": "II", "aql": 1.0}),
    )


def test_a_published_item_version_reads_as_a_sentence_and_links_to_the_item_for_those_who_may_read_it():
    from datetime import UTC, datetime

    from services.console.domain import FOUNDRY, PLANNER, FeedItem, Person
    from services.console.i18n import Translator
    from services.console.sentences import describe, link_of

    def published(**terms: Any) -> FeedItem:
        data = {**item("BB-COMP-K", 2), "item_code": "BB-COMP-K", **terms}
        return FeedItem("e", "ceper.quality.item_published.v1", "/ceper/quality", "BB-COMP-K", datetime.now(UTC), "t", data)

    assert describe(published(), Translator("id")) == "Versi 2 barang BB-COMP-K (Blok rem komposit tipe K) diterbitkan"
    assert describe(published(), Translator("en")) == "Version 2 of item BB-COMP-K (Composite brake block, type K) published"
    assert describe(published(retired=True), Translator("en")) == (
        "Item BB-COMP-K (Composite brake block, type K) retired with version 2"
    )
    assert link_of(published(), Person("p", "planner", PLANNER)) == "/items/BB-COMP-K"
    assert link_of(published(), Person("f", "ikm-001", FOUNDRY, "IKM-001")) == "/items/BB-COMP-K"


# --- the forms ------------------------------------------------------------------------------------------------


def form_of(page: str, form_id: str) -> str:
    found = re.search(rf'<form[^>]*id="{form_id}".*?</form>', page, re.S)
    assert found, f"no form {form_id}"
    return found.group(0)


def key_in(form: str) -> str:
    found = re.search(r'name="key" value="([0-9a-f]{32})"', form)
    assert found, "the form carries no idempotency key"
    return found.group(1)


NEW_ITEM = {
    "code": "PMP-IMP-150", "name_id": "Impeler pompa 150", "name_en": "Pump impeller 150", "product_family": "PUMP_PARTS",
    "unit": "pcs", "min_lot": "1.200", "min_tkdn_percent": "27,5", "sampling.inspection_level": "II", "sampling.aql": "1.5",
    "required_certificates": ["ISO9001", "TKDN"],
}  # fmt: skip


async def test_a_qa_officer_adds_an_item_once_per_form_with_its_idempotency_key(console: httpx.AsyncClient, services: Catalogue):
    await sign_in(console, "qa")
    page = await console.get("/items")
    form = form_of(page.text, "item-form")
    assert 'name="code"' in form and '<option value="PUMP_PARTS">Komponen pompa</option>' in form
    assert '<option value="2.5" selected>2,5</option>' in form  # quality's usual rule to start from
    key = key_in(form)
    data = {"csrftoken": token_in(page.text), "key": key, **NEW_ITEM}
    for _ in range(2):  # a double click adds it once
        answer = await console.post("/items", data=data)
        assert answer.status_code == 303 and answer.headers["location"] == "/items/PMP-IMP-150"
    assert len(services.writes) == 1
    sent = services.writes[0]
    assert sent.method == "POST" and sent.url.path == "/v1/items" and sent.headers["idempotency-key"] == key
    assert sent.headers["authorization"] == f"Bearer {services.issued[-1]}"
    assert json.loads(sent.content) == {
        "code": "PMP-IMP-150", "name_id": "Impeler pompa 150", "name_en": "Pump impeller 150", "product_family": "PUMP_PARTS",
        "unit": "pcs", "min_lot": 1200, "required_certificates": ["ISO9001", "TKDN"], "min_tkdn_percent": 27.5,
        "sampling": {"inspection_level": "II", "aql": 1.5},
    }  # fmt: skip


async def test_qualitys_refusal_is_shown_next_to_its_field_in_the_persons_language_and_the_form_keeps_its_key(
    console: httpx.AsyncClient, services: Catalogue
):
    await sign_in(console, "qa")
    page = await console.get("/items")
    key = key_in(form_of(page.text, "item-form"))
    services.refusal = (422, {"title": "Request is invalid", "status": 422, "errors": [
        {"field": "body.min_lot", "message": "Input should be less than or equal to 1000000", "type": "less_than_equal"},
        {"field": "body.required_certificates.1", "message": "TKDN appears twice"}]})  # fmt: skip
    data = {"csrftoken": token_in(page.text), "key": key, **NEW_ITEM, "min_lot": "2000000", "min_tkdn_percent": "27"}
    refused = await console.post("/items", data=data)
    assert refused.status_code == 422
    form = form_of(refused.text, "item-form")
    assert '<p class="error" id="err-min_lot">Maksimal 1.000.000.</p>' in form and 'aria-describedby="err-min_lot"' in form
    # Above the fields, a sentence in the person's language rather than the service's own words.
    assert "<p>Ada isian yang perlu diperbaiki; tidak ada yang diubah:</p>" in form and "Request is invalid" not in form
    assert 'id="err-required_certificates">Ditolak oleh layanan: TKDN appears twice' in form
    assert key_in(form) == key and 'value="Impeler pompa 150"' in form  # the corrected form goes with the same key
    # In English, and by htmx: the form alone, a 200 so htmx swaps it in.
    await console.post("/language", data={"csrftoken": token_in(page.text), "locale": "en", "back": "/items"})
    refused = await console.post("/items", data=data, headers={"hx-request": "true"})
    assert refused.status_code == 200 and refused.text.startswith('<form class="card wide"')
    assert '<p class="error" id="err-min_lot">Must be at most 1,000,000.</p>' in refused.text and "<h1>" not in refused.text
    assert "<p>Some entries need correcting; nothing was changed:</p>" in refused.text
    # A code quality has already: said next to the code.
    services.refusal = (409, {"title": "Conflict", "status": 409, "detail": "item PMP-IMP-150 exists (version 1)"})
    refused = await console.post("/items", data=data | {"min_lot": "20"}, headers={"hx-request": "true"})
    assert '<p class="error" id="err-code">An item with this code exists already; publish a new version of it instead.</p>' in (
        refused.text
    )


async def test_a_number_the_console_cannot_read_is_refused_before_quality_is_asked(
    console: httpx.AsyncClient, services: Catalogue
):
    await sign_in(console, "qa")
    page = await console.get("/items")
    data = {"csrftoken": token_in(page.text), "key": key_in(form_of(page.text, "item-form")), **NEW_ITEM}
    refused = await console.post("/items", data=data | {"min_lot": "banyak", "min_tkdn_percent": "x"})
    assert refused.status_code == 422 and not services.writes
    form = form_of(refused.text, "item-form")
    assert 'id="err-min_lot">Isi bilangan bulat.' in form and 'id="err-min_tkdn_percent">' in form


async def test_a_new_version_starts_from_the_one_in_force_and_is_published_with_its_key(
    console: httpx.AsyncClient, services: Catalogue
):
    await sign_in(console, "qa")
    page = await console.get("/items/BB-COMP-K")
    form = form_of(page.text, "version-form")
    assert 'action="/items/BB-COMP-K/versions"' in form and 'name="code"' not in form
    assert 'value="Blok rem komposit tipe K"' in form and 'name="min_lot" inputmode="numeric" required value="1500"' in form
    assert '<option value="1" selected>1</option>' in form and 'value="25"' in form  # AQL 1 and TKDN 25 %
    assert 'value="SNI" checked' in form and 'value="ISO9001" checked' in form and 'value="TKDN">' in form
    key = key_in(form)
    data = {"csrftoken": token_in(page.text), "key": key, "name_id": "Blok rem komposit tipe K", "name_en": "Composite brake block, type K",
            "product_family": "BRAKE_BLOCK_COMPOSITE", "unit": "pcs", "min_lot": "1.800", "min_tkdn_percent": "25",
            "sampling.inspection_level": "II", "sampling.aql": "1", "required_certificates": ["SNI", "ISO9001"]}  # fmt: skip
    answer = await console.post("/items/BB-COMP-K/versions", data=data)
    assert answer.status_code == 303 and answer.headers["location"] == "/items/BB-COMP-K"
    sent = services.writes[-1]
    assert sent.url.path == "/v1/items/BB-COMP-K/versions" and sent.headers["idempotency-key"] == key
    assert json.loads(sent.content)["min_lot"] == 1800 and "code" not in json.loads(sent.content)
    # Quality's "nothing changed" is shown on the version form, nothing else refused.
    services.refusal = (409, {"title": "Conflict", "status": 409, "detail": "version 2 of BB-COMP-K already says exactly this"})
    refused = await console.post("/items/BB-COMP-K/versions", data=data | {"key": "f" * 32})
    assert refused.status_code == 422
    assert "version 2 of BB-COMP-K already says exactly this" in form_of(refused.text, "version-form")
    assert 'role="alert"' not in form_of(refused.text, "retire-form")
    # Sent as it came, the form says what the version in force says: told so in the person's language.
    refused = await console.post("/items/BB-COMP-K/versions", data=data | {"key": "d" * 32, "min_lot": "1.500"})
    assert "Versi baru akan sama persis dengan versi yang berlaku: ubah sesuatu dulu." in form_of(refused.text, "version-form")
    assert [r.method for r in services.writes] == ["POST", "POST", "POST"]  # quality decided each time


async def test_retiring_an_item_asks_first_and_sends_quality_one_delete_per_form(console: httpx.AsyncClient, services: Catalogue):
    await sign_in(console, "qa")
    page = await console.get("/items/BB-COMP-K")
    form = form_of(page.text, "retire-form")
    assert 'hx-confirm="Hentikan BB-COMP-K? Pesanan baru tidak boleh menyebutnya' in form
    key = key_in(form)
    for _ in range(2):
        answer = await console.post("/items/BB-COMP-K/retire", data={"csrftoken": token_in(page.text), "key": key})
        assert answer.status_code == 303 and answer.headers["location"] == "/items/BB-COMP-K"
    assert [(r.method, r.url.path, r.headers["idempotency-key"]) for r in services.writes] == [
        ("DELETE", "/v1/items/BB-COMP-K", key)
    ]
    # A form without the page's CSRF token (an expired page, another site's form) changes nothing.
    for path in ("/items", "/items/BB-COMP-K/versions", "/items/BB-COMP-K/retire"):
        expired = await console.post(path, data={"key": "b" * 32, **NEW_ITEM})
        assert expired.status_code == 403 and "Formulir sudah kedaluwarsa" in expired.text, path
    assert len(services.writes) == 1
    services.refusal = (409, {"title": "Conflict", "status": 409, "detail": "item BB-COMP-K is retired already"})
    refused = await console.post(
        "/items/BB-COMP-K/retire", data={"csrftoken": token_in(page.text), "key": "e" * 32}, headers={"hx-request": "true"}
    )
    assert refused.status_code == 200 and 'id="retire-form"' in refused.text and "is retired already" in refused.text


async def test_a_retired_item_offers_no_forms(console: httpx.AsyncClient, services: Catalogue):
    BB_COMP_K.append(item("BB-COMP-K", 3, retired=True))
    try:
        await sign_in(console, "qa")
        page = await console.get("/items/BB-COMP-K")
        assert page.status_code == 200 and 'id="version-form"' not in page.text and 'id="retire-form"' not in page.text
    finally:
        BB_COMP_K.pop()


async def test_a_planner_sees_no_form_and_their_posts_are_refused_without_asking_quality(
    console: httpx.AsyncClient, services: Catalogue
):
    await sign_in(console)
    page = await console.get("/items")
    assert page.status_code == 200 and 'id="item-form"' not in page.text and 'action="/items"' not in page.text
    detail = await console.get("/items/BB-COMP-K")
    assert 'id="version-form"' not in detail.text and 'id="retire-form"' not in detail.text
    token = token_in(page.text)
    for path, data in (("/items", NEW_ITEM), ("/items/BB-COMP-K/versions", NEW_ITEM), ("/items/BB-COMP-K/retire", {})):
        refused = await console.post(path, data={"csrftoken": token, "key": "a" * 32, **data})
        assert refused.status_code == 403, path
    assert not services.writes


async def test_a_new_version_keeps_the_order_of_the_items_certificates(console: httpx.AsyncClient, services: Catalogue):
    BB_COMP_K.append(item("BB-COMP-K", 3, required_certificates=["TKDN", "SNI"]))
    try:
        await sign_in(console, "qa")
        form = form_of((await console.get("/items/BB-COMP-K")).text, "version-form")
        assert re.findall(r'name="required_certificates" value="([A-Z0-9]+)"', form) == ["TKDN", "SNI", "ISO9001", "SKKNI"]
    finally:
        BB_COMP_K.pop()
