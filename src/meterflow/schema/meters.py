from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from meterflow import models
from meterflow.schema.enums import MeterStatus, MeterType
from meterflow.schema.errors import (
    ConflictProblem,
    InvalidTransitionProblem,
    NotFoundProblem,
    ValidationProblem,
)


@strawberry.type
class Meter:
    id: strawberry.ID
    meter_api_name: str
    label: str
    description: str | None
    unit: str | None
    meter_type: MeterType
    dimensions: list[str]
    aggregation_dimension: str | None
    use_in_billing: bool
    status: MeterStatus
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    deprecated_at: datetime | None

    @classmethod
    def from_model(cls, row: models.Meter) -> Meter:
        return cls(
            id=strawberry.ID(str(row.id)),
            meter_api_name=row.meter_api_name,
            label=row.label,
            description=row.description,
            unit=row.unit,
            meter_type=row.meter_type,
            dimensions=list(row.dimensions),
            aggregation_dimension=row.aggregation_dimension,
            use_in_billing=row.use_in_billing,
            status=row.status,
            created_at=row.created_at,
            updated_at=row.updated_at,
            activated_at=row.activated_at,
            deprecated_at=row.deprecated_at,
        )


@strawberry.input
class CreateMeterInput:
    meter_api_name: str
    meter_type: MeterType
    label: str | None = strawberry.field(default=None, description="Defaults to meterApiName.")
    description: str | None = None
    unit: str | None = None
    dimensions: list[str] = strawberry.field(
        default_factory=list, description="Dimension keys events may carry; empty = any key."
    )
    aggregation_dimension: str | None = strawberry.field(
        default=None, description="UNIQUE_COUNT only: the dimension whose distinct values count."
    )
    use_in_billing: bool = True


@strawberry.input(description="Only a DRAFT meter can be edited; fields left out are unchanged.")
class UpdateMeterInput:
    meter_api_name: str
    meter_type: MeterType | None = strawberry.UNSET
    label: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET
    unit: str | None = strawberry.UNSET
    dimensions: list[str] | None = strawberry.UNSET
    aggregation_dimension: str | None = strawberry.UNSET
    use_in_billing: bool | None = strawberry.UNSET


CreateMeterResult = Annotated[
    Meter | ValidationProblem | ConflictProblem, strawberry.union("CreateMeterResult")
]
UpdateMeterResult = Annotated[
    Meter | ValidationProblem | NotFoundProblem | InvalidTransitionProblem,
    strawberry.union("UpdateMeterResult"),
]
MeterResult = Annotated[
    Meter | NotFoundProblem | InvalidTransitionProblem, strawberry.union("MeterResult")
]
