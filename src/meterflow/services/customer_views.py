"""What a dashboard shows beside each customer of a page — current usage, running invoice, plan
and its history, wallet balances — read for many customers at once. Each function costs a
fixed number of statements, however many customers it is given (the GraphQL DataLoaders call
them once per page), never one per customer.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.models import (
    CreditGrant,
    Invoice,
    InvoiceStatus,
    Meter,
    MeterStatus,
    PlanAssignment,
)
from meterflow.services import meters, usage
from meterflow.services.sql import any_text
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
    customer_ids: Sequence[str],
    now: datetime,
    meter_api_name: str | None = None,
) -> dict[str, list[MeterTotal]]:
    """Month-to-date usage per meter for each customer: the SUM, COUNT and MAX meters in one
    statement, each other meter in one grouped usage query of its own.
    All meters but the deprecated ones; or the one meter named, deprecated or not."""
    ids = sorted(set(customer_ids))
    totals: dict[str, list[MeterTotal]] = {c: [] for c in ids}
    reported = await usage_meters(session, account_id=account_id, meter_api_name=meter_api_name)
    additive = [m for m in reported if m.meter_type in usage.ADDITIVE_TOTALS]
    start = floor(now, Grouping.MONTH)
    end = following(start, Grouping.MONTH)
    found = await usage.additive_totals(
        session, account_id=account_id, meters=additive, customer_ids=ids, start=start, end=end
    )
    for meter in reported:
        if meter.meter_type in usage.ADDITIVE_TOTALS:
            by_customer = {
                c: MeterTotal(
                    meter.meter_api_name,
                    meter.meter_type,
                    meter.unit,
                    found.get((meter.id, c), Decimal(0)),
                    start,
                    end,
                )
                for c in ids
            }
        else:
            by_customer = await meter_usage(
                session, account_id=account_id, meter=meter, customer_ids=ids, now=now
            )
        for customer_id, total in by_customer.items():
            totals[customer_id].append(total)
    return totals


async def usage_meters(
    session: AsyncSession, *, account_id: uuid.UUID, meter_api_name: str | None = None
) -> list[Meter]:
    """The meters current usage reports: all but the deprecated, or the one named."""
    return [
        m
        for m in await meters.list_meters(session, account_id=account_id)
        if (meter_api_name is None and m.status is not MeterStatus.DEPRECATED)
        or m.meter_api_name == meter_api_name
    ]


async def meter_usage(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    meter: Meter,
    customer_ids: Sequence[str],
    now: datetime,
) -> dict[str, MeterTotal]:
    """One meter's month-to-date usage for each customer (0 for those without any)."""
    start = floor(now, Grouping.MONTH)
    end = following(start, Grouping.MONTH)
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    answer = await usage.query_usage(
        session,
        account_id=account_id,
        query=usage.UsageQuery(
            meter_api_name=meter.meter_api_name,
            grouping=Grouping.MONTH,
            start=start,
            end=end,
            group_by=(usage.CUSTOMER,),
            filter={usage.CUSTOMER: ids},
        ),
        now=now,
    )
    by_customer = {g.group.get(usage.CUSTOMER): g.total for g in answer.groups}
    return {
        c: MeterTotal(
            meter.meter_api_name,
            meter.meter_type,
            meter.unit,
            by_customer.get(c, Decimal(0)),
            start,
            end,
        )
        for c in ids
    }


async def current_invoices(
    session: AsyncSession, *, account_id: uuid.UUID, customer_ids: Sequence[str], now: datetime
) -> dict[str, Any]:
    """The invoice of the period covering now (not voided), per customer that has one.

    Read-only rows with the invoice's columns as attributes, not ORM objects: building a
    hundred of those cost more than reading them (a dashboard page's invoices)."""
    if not customer_ids:
        return {}
    rows = await session.execute(
        select(Invoice.__table__).where(  # type: ignore[attr-defined]
            col(Invoice.account_id) == account_id,
            col(Invoice.customer_id) == any_text(customer_ids),
            col(Invoice.period_start) <= now,
            col(Invoice.period_end) > now,
            col(Invoice.status) != InvoiceStatus.VOID,
        )
    )
    return {row.customer_id: row for row in rows}


async def assignments(
    session: AsyncSession, *, account_id: uuid.UUID, customer_ids: Sequence[str]
) -> dict[str, list[Any]]:
    """Each customer's plan history, oldest first: read-only rows with PlanAssignment's
    columns as attributes (see current_invoices)."""
    found: dict[str, list[Any]] = defaultdict(list)
    if not customer_ids:
        return found
    for row in await session.execute(
        select(PlanAssignment.__table__)  # type: ignore[attr-defined]
        .where(
            col(PlanAssignment.account_id) == account_id,
            col(PlanAssignment.customer_id) == any_text(customer_ids),
        )
        .order_by(col(PlanAssignment.customer_id), col(PlanAssignment.start_time))
    ):
        found[row.customer_id].append(row)
    return found


def current(history: list[PlanAssignment], now: datetime) -> PlanAssignment | None:
    """The assignment covering now (the latest-starting one, as re-rating reads it)."""
    covering = [
        a for a in history if a.start_time <= now and (a.end_time is None or a.end_time > now)
    ]
    return covering[-1] if covering else None


async def balances(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    wallets: Sequence[tuple[str, str]],
    now: datetime,
) -> dict[tuple[str, str], Decimal]:
    """Credits left per (customer, currency), as wallets.balance reads one."""
    result = {key: Decimal(0) for key in wallets}
    if not wallets:
        return result
    rows = await session.execute(
        select(
            col(CreditGrant.customer_id),
            col(CreditGrant.currency),
            func.coalesce(func.sum(col(CreditGrant.remaining)), 0),
        )
        .where(
            col(CreditGrant.account_id) == account_id,
            col(CreditGrant.customer_id) == any_text([c for c, _ in wallets]),
            col(CreditGrant.expired_at).is_(None),
            (col(CreditGrant.expires_at).is_(None)) | (col(CreditGrant.expires_at) > now),
        )
        .group_by(col(CreditGrant.customer_id), col(CreditGrant.currency))
    )
    for customer_id, currency, total in rows:
        if (customer_id, currency) in result:
            result[(customer_id, currency)] = Decimal(total)
    return result
