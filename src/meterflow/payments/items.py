"""A finalized invoice as Stripe invoice items. Pure.

One item per line with a non-zero amount, then each discount and the credits applied as
negative items, all in the currency's minor units, summing exactly to the amount due. Discounts
are taken in the invoice's order up to its discount total (an invoice never discounts more
than its subtotal, so a later discount may be cut short there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterflow.pricing.money import exponent

ZERO = Decimal(0)


@dataclass(frozen=True)
class Charge:
    description: str
    amount_minor: int


def minor_units(amount: Decimal, currency: str) -> int:
    """An amount of money in the currency's minor units; it must be whole there."""
    scaled = amount.scaleb(exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} {currency} is not a whole number of minor units")
    return int(scaled)


def _describe(line: dict[str, Any]) -> str:
    name = str(line.get("name") or line.get("meterApiName") or "charge")
    dimensions = line.get("dimensions") or {}
    if dimensions:
        name += " (" + ", ".join(f"{k}={v}" for k, v in sorted(dimensions.items())) + ")"
    if line.get("kind") == "USAGE":
        name += f": {line.get('units')} units"
    return name[:500]


def charges(
    *,
    currency: str,
    lines: Iterable[dict[str, Any]],
    discounts: Iterable[dict[str, Any]],
    discount_total: Decimal,
    credits_applied: Decimal,
    total: Decimal,
) -> list[Charge]:
    items = [
        Charge(_describe(line), minor_units(Decimal(line["amount"]), currency))
        for line in lines
        if Decimal(line["amount"]) != 0
    ]
    left = discount_total
    for discount in discounts:
        amount = min(Decimal(discount["amount"]), left)
        if amount > 0:
            items.append(
                Charge(f"Discount: {discount['name']}"[:500], -minor_units(amount, currency))
            )
            left -= amount
    if credits_applied > 0:
        items.append(Charge("Prepaid credits applied", -minor_units(credits_applied, currency)))
    due = minor_units(total, currency)
    if sum(item.amount_minor for item in items) != due:
        raise ValueError(
            f"items sum to {sum(i.amount_minor for i in items)}, the amount due is {due}"
        )
    return items
