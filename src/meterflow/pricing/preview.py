"""One price model applied to one typed quantity: the plan builder's live preview. Pure.

The same `rate`/`rate_by_dimension` the invoices use, rounded to the currency once, as an
invoice line is: the console never re-implements pricing."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from meterflow.errors import ValidationError
from meterflow.pricing.models import ByDimension, parse_price_model
from meterflow.pricing.money import round_money
from meterflow.pricing.rating import ZERO, DimensionUsage, Rated, rate, rate_by_dimension


@dataclass(frozen=True)
class Preview:
    units: Decimal
    billable_units: Decimal
    amount: Decimal  # rounded to the currency
    rated: Rated
    priced: bool  # False: a dimension model with no price for these values and no default


def preview(
    price_model: Any,
    quantity: Decimal,
    *,
    currency: str,
    included_units: Decimal = ZERO,
    dimension_values: tuple[str, ...] = (),
    events: int = 0,
) -> Preview:
    """`quantity` units (of which `included_units` are free) under `price_model` (the API's
    JSON). A dimension model prices the `dimension_values` combination."""
    model = parse_price_model(price_model)
    if not quantity.is_finite() or quantity < 0:
        raise ValidationError("quantity must be a finite number ≥ 0", field="quantity")
    if not included_units.is_finite() or included_units < 0:
        raise ValidationError("includedUnits must be a finite number ≥ 0", field="includedUnits")
    if isinstance(model, ByDimension):
        if len(dimension_values) != len(model.dimensions):
            raise ValidationError(
                f"dimensionValues must give one value per dimension {list(model.dimensions)}",
                field="dimensionValues",
            )
        (variant,) = rate_by_dimension(
            model,
            [DimensionUsage(dimension_values, quantity, events)],
            included=included_units,
        )
        rated, priced = variant.rated, variant.priced
    else:
        rated, priced = rate(model, quantity, included=included_units, events=events), True
    return Preview(
        rated.units, rated.billable_units, round_money(rated.amount, currency), rated, priced
    )
