"""The plan builder's live preview: what a price model charges for a typed quantity."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

import strawberry

from meterflow.pricing.money import written
from meterflow.pricing.preview import Preview
from meterflow.schema.billing import InvoiceTier
from meterflow.schema.errors import ValidationProblem


@strawberry.type(description="A price model applied to one quantity by the rating engine.")
class PricePreview:
    currency: str
    units: Decimal
    billable_units: Decimal = strawberry.field(description="After the included units.")
    amount: Decimal = strawberry.field(description="Rounded to the currency, as on an invoice.")
    priced: bool = strawberry.field(
        description="False when a dimension model has no price for the values and no default."
    )
    tiers: list[InvoiceTier]

    @classmethod
    def from_preview(cls, result: Preview, currency: str) -> PricePreview:
        return cls(
            currency=currency,
            units=result.units,
            billable_units=result.billable_units,
            amount=written(result.amount, currency),
            priced=result.priced,
            tiers=[
                InvoiceTier(
                    tier=t.tier,
                    quantity=t.quantity,
                    unit_price=t.unit_price,
                    flat_fee=t.flat_fee,
                    amount=t.amount,
                )
                for t in result.rated.tiers
            ],
        )


PricePreviewResult = Annotated[
    PricePreview | ValidationProblem, strawberry.union("PricePreviewResult")
]
