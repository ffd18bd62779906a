from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from decimal import Decimal
from typing import TypeVar

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


T = TypeVar("T")


class Pacer:
    """Serves the lists of one answer as async iterators that share one slice of the event
    loop per turn. GraphQL completes a list item by item in Python (~20 µs a point), so an
    answer of 50,000 values would otherwise hold the loop for seconds."""

    SLICE_SECONDS = 0.005
    CHECK_EVERY = 20

    def __init__(self) -> None:
        self._until: float | None = None
        self._reset_pending = False

    async def items(self, items: Iterable[T]) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        for index, item in enumerate(items):
            if index % self.CHECK_EVERY == 0 and self._spent(loop):
                await asyncio.sleep(0)
            yield item

    def _spent(self, loop: asyncio.AbstractEventLoop) -> bool:
        now = loop.time()
        if self._until is None:
            self._until = now + self.SLICE_SECONDS
            return False
        if now < self._until:
            return False
        # Every list of this answer yields for the rest of this turn; the next turn starts a
        # new slice (call_soon runs before the lists resume, and after the I/O poll).
        if not self._reset_pending:
            self._reset_pending = True
            loop.call_soon(self._reset)
        return True

    def _reset(self) -> None:
        self._until, self._reset_pending = None, False


@strawberry.type
class UsagePoint:
    start: datetime
    value: Decimal
    percentage_from_previous: Decimal | None


@strawberry.type
class UsageGroup:
    group: JSON
    total: Decimal
    points: strawberry.Private[list[usage.UsagePoint]]
    pacer: strawberry.Private[Pacer]

    @strawberry.field(graphql_type=list[UsagePoint])
    def values(self) -> AsyncIterator[usage.UsagePoint]:
        # The service's points have UsagePoint's fields: served as they are, since a copy of
        # each would only add objects for the garbage collector to walk.
        return self.pacer.items(self.points)


def _interval_starts(root: UsageResult) -> AsyncIterator[datetime]:
    return root.pacer.items(root.starts)


@strawberry.type
class UsageResult:
    meter_api_name: str
    meter_type: MeterType
    # A field with a resolver, declared here to keep its place in the SDL.
    intervals: list[datetime] = strawberry.field(  # type: ignore[assignment]
        resolver=_interval_starts, graphql_type=list[datetime]
    )
    groups: list[UsageGroup]
    starts: strawberry.Private[list[datetime]]
    pacer: strawberry.Private[Pacer]

    @classmethod
    def from_answer(cls, answer: usage.UsageAnswer) -> UsageResult:
        pacer = Pacer()
        return cls(
            pacer=pacer,
            meter_api_name=answer.meter.meter_api_name,
            meter_type=answer.meter.meter_type,
            starts=answer.intervals,
            groups=[
                UsageGroup(group=JSON(g.group), total=g.total, points=g.values, pacer=pacer)
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
