"""An invoice's amounts from plan terms and usage: lines, fees, minimum, discounts. Pure.

Every line is rounded half-up to the currency's minor unit; the subtotal is the sum of rounded
lines; discounts are rounded too and never exceed what they discount.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from meterflow.pricing.models import ByDimension, PriceModel
from meterflow.pricing.money import round_exact, round_money
from meterflow.pricing.rating import (
    DimensionUsage,
    TierCharge,
    rate,
    rate_by_dimension,
)

ZERO = Decimal(0)
HUNDRED = Decimal(100)


class LineKind(enum.StrEnum):
    USAGE = "USAGE"
    FEE = "FEE"
    MINIMUM = "MINIMUM"


class DiscountKind(enum.StrEnum):
    PERCENT = "PERCENT"
    FIXED = "FIXED"


@dataclass(frozen=True)
class Fee:
    name: str
    amount: Decimal
    recurring: bool = True  # every period; otherwise the first period only
    prorated: bool = False  # a partial first period pays its share


@dataclass(frozen=True)
class Discount:
    name: str
    kind: DiscountKind
    value: Decimal  # percent, or an amount of money
    meter_api_name: str | None = None  # item-level when set, else on the whole invoice
    periods: int | None = None  # the first N periods of the assignment; None = forever
    cap: Decimal | None = None  # at most this much per period


@dataclass(frozen=True)
class Item:
    meter_api_name: str
    model: PriceModel
    included_units: Decimal = ZERO


@dataclass(frozen=True)
class ItemUsage:
    units: Decimal = ZERO
    events: int = 0
    by_dimension: tuple[DimensionUsage, ...] = ()


@dataclass(frozen=True)
class Terms:
    currency: str
    items: tuple[Item, ...]
    fees: tuple[Fee, ...] = ()
    discounts: tuple[Discount, ...] = ()
    minimum_spend: Decimal | None = None
    free_tier_amount: Decimal | None = None  # plan-level: this much usage is free each period


@dataclass(frozen=True)
class PeriodFacts:
    index: int  # 0 = the assignment's first period
    # The share of the period the assignment covers (proration), exact: a rational number.
    covered: Fraction = Fraction(1)


@dataclass(frozen=True)
class Line:
    kind: LineKind
    name: str
    amount: Decimal
    meter_api_name: str | None = None
    dimensions: dict[str, str] = field(default_factory=dict)
    units: Decimal = ZERO
    billable_units: Decimal = ZERO
    tiers: tuple[TierCharge, ...] = ()
    priced: bool = True


@dataclass(frozen=True)
class AppliedDiscount:
    name: str
    amount: Decimal


@dataclass(frozen=True)
class Amounts:
    lines: tuple[Line, ...]
    subtotal: Decimal
    discounts: tuple[AppliedDiscount, ...]
    discount: Decimal
    due_before_credits: Decimal


def usage_lines(terms: Terms, usage: dict[str, ItemUsage]) -> list[Line]:
    lines: list[Line] = []
    for item in terms.items:
        used = usage.get(item.meter_api_name, ItemUsage())
        if isinstance(item.model, ByDimension):
            for variant in rate_by_dimension(
                item.model, list(used.by_dimension), included=item.included_units
            ):
                lines.append(
                    Line(
                        LineKind.USAGE,
                        item.meter_api_name,
                        round_money(variant.rated.amount, terms.currency),
                        meter_api_name=item.meter_api_name,
                        dimensions=dict(zip(item.model.dimensions, variant.values, strict=True)),
                        units=variant.rated.units,
                        billable_units=variant.rated.billable_units,
                        tiers=variant.rated.tiers,
                        priced=variant.priced,
                    )
                )
        else:
            rated = rate(item.model, used.units, included=item.included_units, events=used.events)
            lines.append(
                Line(
                    LineKind.USAGE,
                    item.meter_api_name,
                    round_money(rated.amount, terms.currency),
                    meter_api_name=item.meter_api_name,
                    units=rated.units,
                    billable_units=rated.billable_units,
                    tiers=rated.tiers,
                )
            )
    return lines


def fee_lines(terms: Terms, period: PeriodFacts) -> list[Line]:
    lines = []
    for fee in terms.fees:
        if not fee.recurring and period.index > 0:
            continue
        share = period.covered if fee.prorated and period.index == 0 else Fraction(1)
        amount = round_exact(Fraction(fee.amount) * share, terms.currency)
        lines.append(Line(LineKind.FEE, fee.name, amount))
    return lines


def _discount_amount(discount: Discount, base: Decimal, currency: str) -> Decimal:
    if base <= 0:
        return ZERO
    raw = (
        base * discount.value / HUNDRED if discount.kind is DiscountKind.PERCENT else discount.value
    )
    if discount.cap is not None:
        raw = min(raw, discount.cap)
    return round_money(min(raw, base), currency)


def price(terms: Terms, usage: dict[str, ItemUsage], period: PeriodFacts) -> Amounts:
    lines = usage_lines(terms, usage) + fee_lines(terms, period)
    subtotal = sum((line.amount for line in lines), ZERO)
    if terms.minimum_spend is not None and subtotal < terms.minimum_spend:
        top_up = round_money(terms.minimum_spend - subtotal, terms.currency)
        lines.append(Line(LineKind.MINIMUM, "minimum spend", top_up))
        subtotal += top_up

    applied: list[AppliedDiscount] = []
    usage_total = sum((line.amount for line in lines if line.kind is LineKind.USAGE), ZERO)
    if terms.free_tier_amount:
        free = round_money(min(terms.free_tier_amount, usage_total), terms.currency)
        if free:
            applied.append(AppliedDiscount("free tier", free))
    active = [d for d in terms.discounts if d.periods is None or period.index < d.periods]
    for discount in (d for d in active if d.meter_api_name is not None):
        base = sum(
            (line.amount for line in lines if line.meter_api_name == discount.meter_api_name), ZERO
        )
        amount = _discount_amount(discount, base, terms.currency)
        if amount:
            applied.append(AppliedDiscount(discount.name, amount))
    for discount in (d for d in active if d.meter_api_name is None):
        remaining = subtotal - sum((a.amount for a in applied), ZERO)
        amount = _discount_amount(discount, remaining, terms.currency)
        if amount:
            applied.append(AppliedDiscount(discount.name, amount))
    discount_total = min(subtotal, sum((a.amount for a in applied), ZERO))
    return Amounts(
        tuple(lines), subtotal, tuple(applied), discount_total, subtotal - discount_total
    )
