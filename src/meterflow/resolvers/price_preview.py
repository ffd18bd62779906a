"""previewPrice: the plan builder asks the rating engine, so no pricing lives in the console."""

from __future__ import annotations

from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from meterflow.errors import ValidationError
from meterflow.pricing.preview import preview
from meterflow.resolvers.base import Info, require_admin
from meterflow.schema.errors import ValidationProblem
from meterflow.schema.price_preview import PricePreview, PricePreviewResult
from meterflow.services.plans import CURRENCY_RE

MAX_DIMENSION_VALUES = 16


@strawberry.type
class PricePreviewQueries:
    @strawberry.field(
        description=(
            "What a price model (as in PlanItemInput.priceModel) charges for `quantity` units, "
            "computed by the server's rating engine, rounded as an invoice line is. A dimension "
            "model prices the `dimensionValues` combination (one value per dimension, in order)."
        )
    )
    def preview_price(
        self,
        info: Info,
        price_model: JSON,
        quantity: Decimal,
        included_units: Decimal | None = None,
        currency: str = "USD",
        dimension_values: list[str] | None = None,
    ) -> PricePreviewResult:
        require_admin(info)
        code = currency.upper()
        try:
            if not CURRENCY_RE.fullmatch(code):
                raise ValidationError("currency must be a 3-letter ISO 4217 code", field="currency")
            values = tuple(dimension_values or ())
            if len(values) > MAX_DIMENSION_VALUES:
                raise ValidationError("too many dimensionValues", field="dimensionValues")
            result = preview(
                price_model,
                quantity,
                currency=code,
                included_units=included_units or Decimal(0),
                dimension_values=values,
            )
        except ValidationError as exc:
            return ValidationProblem(code=exc.code, message=exc.message, field=exc.field)
        return PricePreview.from_preview(result, code)
