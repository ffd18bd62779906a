"""Reading invoices: the current one (created and rated on first read) and the list."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import ValidationError
from meterflow.models import Invoice, InvoiceStatus
from meterflow.services import assignments, plans, validation
from meterflow.services.invoice_rating import rerate_customer
from meterflow.services.pagination import (
    OrderDirection,
    Ordering,
    Page,
    after_keyset,
    decode_position,
    encode_position,
    order_by,
)
from meterflow.services.periods import period_at


async def current_invoice(
    session: AsyncSession, *, account_id: uuid.UUID, customer_id: str, now: datetime
) -> Invoice | None:
    """The running invoice of the current period (created and rated if missing)."""
    assignment = await assignments.assignment_at(
        session, account_id=account_id, customer_id=customer_id, moment=now
    )
    if assignment is None:
        return None
    loaded = await plans.load_plan(session, account_id=account_id, plan_id=assignment.plan_id)
    assert loaded is not None
    period = period_at(
        assignment.start_time, loaded.plan.period_interval, loaded.plan.period_count, now
    )
    found = await session.scalar(
        select(Invoice).where(
            col(Invoice.account_id) == account_id,
            col(Invoice.customer_id) == customer_id,
            col(Invoice.period_start) == period.start,
        )
    )
    if found is not None and found.version > 0:
        return found
    await rerate_customer(session, account_id=account_id, customer_id=customer_id, now=now)
    return await session.scalar(
        select(Invoice).where(
            col(Invoice.account_id) == account_id,
            col(Invoice.customer_id) == customer_id,
            col(Invoice.period_start) == period.start,
        )
    )


async def get_invoice(
    session: AsyncSession, *, account_id: uuid.UUID, invoice_id: uuid.UUID
) -> Invoice | None:
    """One invoice of the account by its id, or None."""
    return await session.scalar(
        select(Invoice).where(col(Invoice.account_id) == account_id, col(Invoice.id) == invoice_id)
    )


class InvoiceOrderField(enum.StrEnum):
    PERIOD_START = "PERIOD_START"
    TOTAL = "TOTAL"


def invoice_ordering(field: InvoiceOrderField, direction: OrderDirection) -> Ordering:
    return Ordering(
        "invoices",
        field.value,
        direction,
        datetime if field is InvoiceOrderField.PERIOD_START else Decimal,
        default=field is InvoiceOrderField.PERIOD_START and direction is OrderDirection.DESC,
    )


@dataclass(frozen=True)
class InvoiceFilter:
    """Conditions that all hold (with `list_invoices`' own customer_id and status)."""

    status: InvoiceStatus | None = None
    customer_id: str | None = None
    period_start_from: datetime | None = None  # inclusive
    period_start_to: datetime | None = None  # exclusive


async def list_invoices(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str | None,
    status: InvoiceStatus | None,
    limit: int,
    after: str | None,
    filter: InvoiceFilter | None = None,
    order_field: InvoiceOrderField = InvoiceOrderField.PERIOD_START,
    direction: OrderDirection = OrderDirection.DESC,
) -> Page[Invoice]:
    """A page of the account's invoices (one customer's with `customer_id`), sorted by
    `order_field` then id; by default the newest period first."""
    ordering = invoice_ordering(order_field, direction)
    position = decode_position(after, ordering) if after else None
    filter = filter or InvoiceFilter()
    query = select(Invoice).where(col(Invoice.account_id) == account_id)
    for customer in (customer_id, filter.customer_id):
        if customer is not None:
            query = query.where(col(Invoice.customer_id) == customer)
    for wanted in (status, filter.status):
        if wanted is not None:
            query = query.where(col(Invoice.status) == wanted)
    start, end = filter.period_start_from, filter.period_start_to
    if start is not None:
        start = validation.utc_time(start, field="filter.periodStartFrom")
        query = query.where(col(Invoice.period_start) >= start)
    if end is not None:
        end = validation.utc_time(end, field="filter.periodStartTo")
        query = query.where(col(Invoice.period_start) < end)
    if start is not None and end is not None and end < start:
        raise ValidationError(
            "filter.periodStartTo is before filter.periodStartFrom", field="filter.periodStartTo"
        )
    key: Any = (
        col(Invoice.period_start)
        if order_field is InvoiceOrderField.PERIOD_START
        else col(Invoice.total)
    )
    if position is not None:
        query = query.where(after_keyset(key, col(Invoice.id), position, ordering))
    rows = list(
        await session.scalars(
            query.order_by(*order_by(key, col(Invoice.id), ordering)).limit(limit + 1)
        )
    )
    page = rows[:limit]
    field = "period_start" if order_field is InvoiceOrderField.PERIOD_START else "total"
    return Page(
        page,
        len(rows) > limit,
        [encode_position(ordering, getattr(row, field), row.id) for row in page],
    )
