"""Rating: units of usage under a price model → an amount with its tier breakdown. Pure.

Amounts here are exact (unrounded); the invoice rounds each line to the currency once.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from meterflow.pricing.models import (
    ByDimension,
    Graduated,
    Package,
    Percentage,
    PerUnit,
    SimpleModel,
    Tier,
    Volume,
)

ZERO = Decimal(0)
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class TierCharge:
    tier: int  # 1-based position in the model's tiers (1 for single-price models)
    quantity: Decimal  # units, or packages for a package model
    unit_price: Decimal  # per unit, or per package
    flat_fee: Decimal
    amount: Decimal


@dataclass(frozen=True)
class Rated:
    units: Decimal  # metered
    billable_units: Decimal  # after included units
    amount: Decimal
    tiers: tuple[TierCharge, ...]


def rate(model: SimpleModel, units: Decimal, *, included: Decimal = ZERO, events: int = 0) -> Rated:
    """Price `units` (of which `included` are free) under one model. Never negative."""
    billable = max(ZERO, units - max(ZERO, included))
    charges = _charges(model, billable, events)
    return Rated(units, billable, sum((c.amount for c in charges), ZERO), charges)


def _charges(model: SimpleModel, billable: Decimal, events: int) -> tuple[TierCharge, ...]:
    if isinstance(model, PerUnit):
        return (TierCharge(1, billable, model.unit_price, ZERO, billable * model.unit_price),)
    if isinstance(model, Package):
        packages = billable / model.size
        if not model.allow_partial:
            packages = packages.to_integral_value(rounding=ROUND_CEILING)
        return (TierCharge(1, packages, model.price, ZERO, packages * model.price),)
    if isinstance(model, Graduated):
        return _graduated(model.tiers, billable)
    if isinstance(model, Volume):
        return _volume(model.tiers, billable)
    if isinstance(model, Percentage):
        amount = billable * model.percent / HUNDRED
        if model.min_per_unit is not None and events:
            amount = max(amount, model.min_per_unit * events)
        if model.max_per_unit is not None and events:
            amount = min(amount, model.max_per_unit * events)
        return (TierCharge(1, billable, model.percent / HUNDRED, ZERO, amount),)
    raise TypeError(f"not a simple price model: {model!r}")


def _graduated(tiers: tuple[Tier, ...], billable: Decimal) -> tuple[TierCharge, ...]:
    charges = []
    lower = ZERO
    for index, tier in enumerate(tiers, 1):
        if billable <= lower:
            break
        upper = billable if tier.up_to is None else min(billable, tier.up_to)
        quantity = upper - lower
        charges.append(
            TierCharge(
                index,
                quantity,
                tier.unit_price,
                tier.flat_fee,
                quantity * tier.unit_price + tier.flat_fee,
            )
        )
        if tier.up_to is None:
            break
        lower = tier.up_to
    return tuple(charges)


def _volume(tiers: tuple[Tier, ...], billable: Decimal) -> tuple[TierCharge, ...]:
    if billable <= 0:
        return ()
    for index, tier in enumerate(tiers, 1):
        if tier.up_to is None or billable <= tier.up_to:
            return (
                TierCharge(
                    index,
                    billable,
                    tier.unit_price,
                    tier.flat_fee,
                    billable * tier.unit_price + tier.flat_fee,
                ),
            )
    raise AssertionError("the last tier is unbounded")  # guaranteed by parsing


@dataclass(frozen=True)
class DimensionUsage:
    values: tuple[str, ...]
    units: Decimal
    events: int = 0


@dataclass(frozen=True)
class RatedVariant:
    values: tuple[str, ...]
    rated: Rated
    priced: bool  # False when no price matched and there is no default (charged 0)


def rate_by_dimension(
    model: ByDimension, usage: list[DimensionUsage], *, included: Decimal = ZERO
) -> list[RatedVariant]:
    """Each dimension combination priced by its own model. Included units are used up by the
    combinations in sorted order, so the result does not depend on the order of `usage`."""
    remaining = max(ZERO, included)
    rated = []
    for variant in sorted(usage, key=lambda u: u.values):
        free = min(remaining, variant.units)
        remaining -= free
        chosen = model.model_for(variant.values)
        if chosen is None:
            rated.append(
                RatedVariant(
                    variant.values,
                    Rated(variant.units, variant.units - free, ZERO, ()),
                    priced=False,
                )
            )
            continue
        rated.append(
            RatedVariant(
                variant.values,
                rate(chosen, variant.units, included=free, events=variant.events),
                priced=True,
            )
        )
    return rated
