"""Transformations used by the quickstart pipeline."""

from __future__ import annotations

from typing import Any

PRICES = {"espresso": 2.5, "latte": 3.8, "tea": 2.1}


def price_order(order: dict[str, Any]) -> dict[str, Any]:
    """Turn a generated order number into a priced order."""
    drink = list(PRICES)[order["n"] % len(PRICES)]
    quantity = order["n"] % 3 + 1
    return {
        "order": order["n"],
        "drink": drink,
        "quantity": quantity,
        "total": round(PRICES[drink] * quantity, 2),
    }
