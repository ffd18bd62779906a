"""Invoice rows: the invoice of each period of an assignment exists (created empty, backfilled
for assignments that start in the past) and is voided when its plan no longer covers it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.models import Invoice, InvoiceStatus, PlanAssignment
from meterflow.services import plans, wallets, webhook_events, webhook_payloads
from meterflow.services.periods import period_at
from meterflow.services.sql import any_text

RUNNING = (InvoiceStatus.OPEN, InvoiceStatus.GRACE)
EPSILON = timedelta(microseconds=1)


async def invoice_for(
    session: AsyncSession,
    account_id: uuid.UUID,
    customer_id: str,
    assignment: PlanAssignment,
    loaded: plans.LoadedPlan,
    moment: datetime,
    now: datetime,
) -> Invoice:
    """The invoice of the period containing `moment`, created (empty) if it does not exist."""
    plan = loaded.plan
    period = period_at(assignment.start_time, plan.period_interval, plan.period_count, moment)
    created = await session.scalar(
        insert(Invoice)
        .values(
            account_id=account_id,
            id=uuid.uuid4(),
            customer_id=customer_id,
            plan_id=plan.id,
            assignment_id=assignment.id,
            period_start=period.start,
            period_end=period.end,
            status=InvoiceStatus.OPEN,
            currency=plan.currency,
            lines=[],
            discounts=[],
            subtotal=0,
            discount=0,
            credits_applied=0,
            total=0,
            version=0,
        )
        .on_conflict_do_nothing(constraint="uq_invoices_customer_period")
        .returning(col(Invoice.id))
    )
    invoice = await session.scalar(
        select(Invoice)
        .where(
            col(Invoice.account_id) == account_id,
            col(Invoice.customer_id) == customer_id,
            col(Invoice.period_start) == period.start,
        )
        .with_for_update()
    )
    assert invoice is not None
    if created is not None:
        await invoices_created(session, account_id, [invoice], now)
    return invoice


async def invoices_created(
    session: AsyncSession, account_id: uuid.UUID, invoices: list[Invoice], now: datetime
) -> None:
    """invoice.created: the invoice as it is born (OPEN, nothing billed yet; invoice.updated,
    opt-in, follows it as usage arrives)."""
    await webhook_events.notify(
        session,
        account_id=account_id,
        event_type="invoice.created",
        build=lambda: [({"invoice": webhook_payloads.invoice(i)}, str(i.id)) for i in invoices],
        now=now,
    )


async def open_invoices(
    session: AsyncSession,
    account_id: uuid.UUID,
    wanted: list[tuple[PlanAssignment, plans.LoadedPlan]],
    moment: datetime,
) -> list[Invoice]:
    """invoice_for for many customers at once (one INSERT, one SELECT), locked, in the order
    of `wanted`. At most a few thousand: the INSERT binds 16 parameters per invoice."""
    if not wanted:
        return []
    rows: list[dict[str, Any]] = []
    keys: list[tuple[str, datetime]] = []
    for assignment, loaded in wanted:
        plan = loaded.plan
        period = period_at(assignment.start_time, plan.period_interval, plan.period_count, moment)
        rows.append(
            {
                "account_id": account_id,
                "id": uuid.uuid4(),
                "customer_id": assignment.customer_id,
                "plan_id": plan.id,
                "assignment_id": assignment.id,
                "period_start": period.start,
                "period_end": period.end,
                "status": InvoiceStatus.OPEN,
                "currency": plan.currency,
                "lines": [],
                "discounts": [],
                "subtotal": 0,
                "discount": 0,
                "credits_applied": 0,
                "total": 0,
                "version": 0,
            }
        )
        keys.append((assignment.customer_id, period.start))
    created = set(
        await session.scalars(
            insert(Invoice)
            .values(rows)
            .on_conflict_do_nothing(constraint="uq_invoices_customer_period")
            .returning(col(Invoice.id))
        )
    )
    found = {
        (inv.customer_id, inv.period_start): inv
        for inv in await session.scalars(
            select(Invoice)
            .where(
                col(Invoice.account_id) == account_id,
                col(Invoice.customer_id) == any_text([customer for customer, _ in keys]),
                col(Invoice.period_start) <= moment,
                col(Invoice.period_end) > moment,
            )
            .with_for_update()
        )
    }
    ordered = [found[key] for key in keys]
    await invoices_created(session, account_id, [i for i in ordered if i.id in created], moment)
    return ordered


MAX_BACKFILL_PERIODS = 400


async def backfill(
    session: AsyncSession,
    account_id: uuid.UUID,
    customer_id: str,
    assignment: PlanAssignment,
    loaded: plans.LoadedPlan,
    now: datetime,
) -> None:
    """Every period of the assignment up to now has an invoice (an assignment may start in the
    past): from the customer's newest invoice, or the assignment's start, to the current one."""
    newest = await session.scalar(
        select(func.max(col(Invoice.period_start))).where(
            col(Invoice.account_id) == account_id, col(Invoice.customer_id) == customer_id
        )
    )
    plan = loaded.plan
    moment = max(assignment.start_time, newest) if newest else assignment.start_time
    for _ in range(MAX_BACKFILL_PERIODS):
        period = period_at(assignment.start_time, plan.period_interval, plan.period_count, moment)
        await invoice_for(session, account_id, customer_id, assignment, loaded, moment, now)
        if period.end > now:
            return
        moment = period.end


async def existing_periods(
    session: AsyncSession, account_id: uuid.UUID, customer_ids: list[str]
) -> set[tuple[str, datetime]]:
    """(customer, period start) of the customers' invoices: one array parameter, however many
    customers (a tuple IN list binds two parameters per customer and hits the limit)."""
    if not customer_ids:
        return set()
    rows = await session.execute(
        select(col(Invoice.customer_id), col(Invoice.period_start)).where(
            col(Invoice.account_id) == account_id,
            col(Invoice.customer_id) == any_text(customer_ids),
        )
    )
    return {(row[0], row[1]) for row in rows}


async def void(session: AsyncSession, invoice: Invoice, now: datetime) -> None:
    await wallets.draw(
        session,
        account_id=invoice.account_id,
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        invoice_id=invoice.id,
        due=Decimal(0),
        now=now,
    )
    invoice.status = InvoiceStatus.VOID
    invoice.credits_applied = Decimal(0)
    invoice.updated_at = now
    await invoice_event(session, invoice, "invoice.voided", now)


async def invoice_event(
    session: AsyncSession, invoice: Invoice, event_type: str, now: datetime
) -> None:
    await webhook_events.notify(
        session,
        account_id=invoice.account_id,
        event_type=event_type,
        build=lambda: [({"invoice": webhook_payloads.invoice(invoice)}, str(invoice.id))],
        now=now,
    )
