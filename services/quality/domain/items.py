"""The items quality tests, each made by one of capacity's product families."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    code: str
    description: str
    product_family: str  # capacity's product family that makes it


ITEMS: dict[str, Item] = {
    item.code: item
    for item in (
        Item("BB-COMP-K", "Blok rem komposit tipe K", "BRAKE_BLOCK_COMPOSITE"),
        Item("BB-COMP-LL", "Blok rem komposit tipe LL", "BRAKE_BLOCK_COMPOSITE"),
        Item("BB-CI", "Blok rem besi cor", "BRAKE_BLOCK_CAST_IRON"),
        # The tooling aid for making piston rings TMMIN develops with the cooperative: small, high-precision lots.
        Item("TMMIN-PRT", "Alat bantu pembuatan ring piston (TMMIN)", "AUTOMOTIVE_PARTS"),
    )
}


def unknown_item(item_code: str) -> str:
    return f"unknown item {item_code!r}; known: {', '.join(ITEMS)}"
