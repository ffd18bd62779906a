from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import strawberry
from strawberry.scalars import JSON

from meterflow.schema.enums import MeterType
from meterflow.services import usage
from meterflow.services.timebuckets import Grouping

TimeGrouping = strawberry.enum(Grouping, name="TimeGrouping")


@strawberry.input
class UsageQueryInput:
    meter_api_name: str
    time_grouping_interval: Grouping
    start_time: datetime
    end_time: datetime = strawberry.field(description="Exclusive; widened to a whole hour.")
    group_by: list[str] | None = strawberry.field(
        default=None, description='"customerId" and/or dimension keys.'
    )
    filter: JSON | None = strawberry.field(
        default=None, description='{key: [values]}, e.g. {"customerId": ["c1"]}.'
    )
    limit: int | None = strawberry.field(default=None, description="Top groups by total.")
    ascending: bool = False
    aggregation: MeterType | None = strawberry.field(
        default=None, description="Override the meter's own aggregation: SUM, COUNT or MAX."
    )


@strawberry.type
class UsagePoint:
    start: datetime
    value: Decimal
    percentage_from_previous: Decimal | None


@strawberry.type
class UsageGroup:
    group: JSON
    total: Decimal
    values: list[UsagePoint]


@strawberry.type
class UsageResult:
    meter_api_name: str
    meter_type: MeterType
    intervals: list[datetime]
    groups: list[UsageGroup]

    @classmethod
    def from_answer(cls, answer: usage.UsageAnswer) -> UsageResult:
        return cls(
            meter_api_name=answer.meter.meter_api_name,
            meter_type=answer.meter.meter_type,
            intervals=answer.intervals,
            groups=[
                UsageGroup(
                    group=JSON(g.group),
                    total=g.total,
                    values=[
                        UsagePoint(
                            start=p.start,
                            value=p.value,
                            percentage_from_previous=p.percentage_from_previous,
                        )
                        for p in g.values
                    ],
                )
                for g in answer.groups
            ],
        )


@strawberry.type
class MeterUsage:
    meter_api_name: str
    meter_type: MeterType
    unit: str | None
    value: Decimal
    period_start: datetime
    period_end: datetime
