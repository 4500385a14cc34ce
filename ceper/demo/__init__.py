"""Demo data for `ceper seed` and `make dev`: the cooperative's members and its first purchase orders: KAI's composite
blocks, INKA's cast-iron blocks and a small lot of TMMIN's piston-ring tooling.

Deterministic for a given seed, and safe to run again: what exists already is left as it is.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

import httpx

VILLAGES = ("Batur", "Tegalrejo", "Ngawonggo", "Kuncen", "Dalangan", "Mundu", "Jombor")
FORMS = ("CV", "UD", "PT", "Bengkel")
WORDS = (
    "Logam",
    "Jaya",
    "Makmur",
    "Sentosa",
    "Abadi",
    "Karya",
    "Mandiri",
    "Baja",
    "Cor",
    "Sejahtera",
    "Manunggal",
    "Utama",
    "Sinar",
    "Agung",
    "Rejeki",
    "Teknik",
    "Barokah",
    "Mulia",
    "Perkasa",
    "Tunggal",
)
OTHER_FAMILIES = ("PUMP_PARTS", "MACHINE_PARTS", "SHIP_PARTS", "AUTOMOTIVE_PARTS", "RAILWAY_PARTS", "HOUSEHOLD_GOODS")
MEMBERS = 168


@dataclass(frozen=True)
class DemoFoundry:
    code: str
    name: str
    village: str
    product_families: list[str]


def demo_foundries(seed: int = 1995, members: int = MEMBERS) -> list[DemoFoundry]:
    rng = random.Random(seed)
    composite = set(rng.sample(range(members), k=32))  # a minority is equipped with composite presses
    foundries = []
    for i in range(members):
        families: list[str] = []
        if i in composite:
            families.append("BRAKE_BLOCK_COMPOSITE")
        if i in composite or rng.random() < 0.45:
            families.append("BRAKE_BLOCK_CAST_IRON")
        families += rng.sample(OTHER_FAMILIES, k=rng.randint(0 if families else 1, 2))
        name = f"{rng.choice(FORMS)} {rng.choice(WORDS)} {rng.choice(WORDS)}"
        foundries.append(DemoFoundry(f"IKM-{i + 1:03d}", name, rng.choice(VILLAGES), families))
    return foundries


def demo_purchase_orders(today: date) -> list[dict[str, object]]:
    year = today.year + 1
    months = [date(year, m, 28) for m in range(1, 13)]
    sites = ["BY-YK", "BY-MRI", "BY-TGL", "BY-SGU", "BY-KAC"]
    kai = {
        "buyer_code": "KAI",
        "po_number": f"KAI/PO/{year}/00042",
        "issued_on": today.isoformat(),
        "currency": "IDR",
        "lines": [
            {
                "line_no": 1,
                "item_code": "BB-COMP-K",
                "description": "Blok rem komposit tipe K",
                "quantity": 120_000,
                "unit_price": 203_700,
                "deliveries": [
                    {"due_date": d.isoformat(), "quantity": 10_000, "site_code": sites[i % len(sites)]}
                    for i, d in enumerate(months)
                ],
                "requirements": {"certificates": ["SNI", "ISO9001"], "min_tkdn_percent": 25},
            }
        ],
    }
    inka = {
        "buyer_code": "INKA",
        "po_number": f"INKA/SPK/{year}/0117",
        "issued_on": today.isoformat(),
        "currency": "IDR",
        "lines": [
            {
                "line_no": 1,
                "item_code": "BB-CI",
                "description": "Blok rem besi cor",
                "quantity": 8_000,
                "unit_price": 111_000,
                "deliveries": [
                    {"due_date": (today + timedelta(days=60)).isoformat(), "quantity": 4_000, "site_code": "INKA-MN"},
                    {"due_date": (today + timedelta(days=120)).isoformat(), "quantity": 4_000, "site_code": "INKA-MN"},
                ],
            }
        ],
    }
    # Tooling is made in tens of pieces: the members that cast automotive parts and hold ISO 9001 share it.
    tmmin = {
        "buyer_code": "TMMIN",
        "po_number": f"TMMIN/PO/{year}/0031",
        "issued_on": today.isoformat(),
        "currency": "IDR",
        "lines": [
            {
                "line_no": 1,
                "item_code": "TMMIN-PRT",
                "description": "Alat bantu pembuatan ring piston",
                "quantity": 300,
                "unit_price": 2_950_000,
                "deliveries": [
                    {"due_date": (today + timedelta(days=70)).isoformat(), "quantity": 150, "site_code": "TMMIN-SNT"},
                    {"due_date": (today + timedelta(days=100)).isoformat(), "quantity": 150, "site_code": "TMMIN-SNT"},
                ],
            }
        ],
    }
    return [kai, inka, tmmin]


def seed_demo(urls: dict[str, str], auth: httpx.Auth, seed: int = 1995) -> str:
    """Loads the demo through the services' own APIs, so every fact also reaches the others as events; `auth` is
    someone allowed to (the demo admin)."""
    from .capacity import seed_capacity
    from .orders import seed_fulfilment
    from .quality import seed_quality

    members = demo_foundries(seed)
    today = date.today()
    with httpx.Client(timeout=30, auth=auth) as client:
        capacity = seed_capacity(client, urls["capacity"], members, seed, today=today)
        quality = seed_quality(client, urls["quality"], members, seed, today)
        orders = 0
        for order in demo_purchase_orders(today):
            key = f"demo-{order['po_number']}"
            response = client.post(f"{urls['orders']}/v1/purchase-orders", json=order, headers={"Idempotency-Key": key})
            if response.status_code == 201 and response.headers.get("Idempotent-Replayed") != "true":
                orders += 1
            elif response.status_code not in (201, 409):
                raise RuntimeError(f"seeding {order['po_number']} failed: {response.status_code} {response.text}")
        inka = next(o for o in demo_purchase_orders(today) if o["buyer_code"] == "INKA")
        fulfilment = seed_fulfilment(client, urls, str(inka["po_number"]), seed, today)
    return "\n".join([capacity, quality, f"Orders demo: {orders} purchase orders added (existing ones kept).", fulfilment])
