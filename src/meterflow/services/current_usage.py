"""A customer's usage so far in the current period, per meter (month to date until plans)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.models import MeterStatus
from meterflow.services import meters, usage
from meterflow.services.timebuckets import Grouping, floor, following


@dataclass(frozen=True)
class MeterTotal:
    meter_api_name: str
    meter_type: str
    unit: str | None
    value: Decimal
    period_start: datetime
    period_end: datetime


async def current_usage(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    now: datetime,
    meter_api_name: str | None = None,
) -> list[MeterTotal]:
    start = floor(now, Grouping.MONTH)
    end = following(start, Grouping.MONTH)
    totals = []
    for meter in await meters.list_meters(session, account_id=account_id):
        if meter_api_name is not None and meter.meter_api_name != meter_api_name:
            continue
        if meter.status is MeterStatus.DEPRECATED and meter_api_name is None:
            continue
        answer = await usage.query_usage(
            session,
            account_id=account_id,
            query=usage.UsageQuery(
                meter_api_name=meter.meter_api_name,
                grouping=Grouping.MONTH,
                start=start,
                end=end,
                filter={usage.CUSTOMER: [customer_id]},
            ),
            now=now,
        )
        value = answer.groups[0].total if answer.groups else Decimal(0)
        totals.append(
            MeterTotal(meter.meter_api_name, meter.meter_type, meter.unit, value, start, end)
        )
    return totals
