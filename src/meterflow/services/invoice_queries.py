"""Reading invoices: the current one (created and rated on first read) and the list."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.models import Invoice, InvoiceStatus
from meterflow.services import assignments, plans
from meterflow.services.invoice_rating import rerate_customer
from meterflow.services.pagination import Page
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


async def list_invoices(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str | None,
    status: InvoiceStatus | None,
    limit: int,
    after: str | None,
) -> Page[Invoice]:
    from meterflow.services.pagination import decode_cursor

    query = select(Invoice).where(col(Invoice.account_id) == account_id)
    if customer_id is not None:
        query = query.where(col(Invoice.customer_id) == customer_id)
    if status is not None:
        query = query.where(col(Invoice.status) == status)
    if after:
        position = decode_cursor(after)
        query = query.where(
            tuple_(col(Invoice.period_start), col(Invoice.id))
            < tuple_(position.created_at, position.id)
        )
    rows = list(
        await session.scalars(
            query.order_by(col(Invoice.period_start).desc(), col(Invoice.id).desc()).limit(
                limit + 1
            )
        )
    )
    return Page(rows[:limit], len(rows) > limit)
