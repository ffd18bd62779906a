"""Invoice lifecycle: OPEN (running) → GRACE (period over, late events still count for
`grace_period_hours`) → FINALIZED (locked; late events are stored but change nothing billed),
and every customer on a plan has its current period's invoice."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.models import Invoice, InvoiceStatus, PlanAssignment
from meterflow.services import plans, wallets
from meterflow.services.invoice_rating import PlanCache, rate_batch
from meterflow.services.invoice_rows import existing_periods, invoice_for
from meterflow.services.periods import period_at


@dataclass
class CloseReport:
    finalized: int = 0
    to_grace: int = 0
    opened: int = 0
    expired_grants: int = 0


async def close_periods(session: AsyncSession, *, now: datetime, batch: int = 2000) -> CloseReport:
    """Move ended periods on and open the current ones. Idempotent: run it as often as you
    like; a second run at the same `now` changes nothing."""
    report = CloseReport(expired_grants=await wallets.expire(session, now=now))
    while True:
        ended = list(
            await session.scalars(
                select(Invoice)
                .where(col(Invoice.status) == InvoiceStatus.OPEN, col(Invoice.period_end) <= now)
                .order_by(col(Invoice.period_end))
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        )
        grace = list(
            await session.scalars(
                select(Invoice)
                .where(col(Invoice.status) == InvoiceStatus.GRACE)
                .limit(batch)
                .with_for_update(skip_locked=True)
            )
        )
        if not ended and not grace:
            break
        await rate_batch(session, ended + grace, now)
        progressed = False
        for inv in ended + grace:
            loaded_plan = await plans.load_plan(
                session, account_id=inv.account_id, plan_id=inv.plan_id
            )
            assert loaded_plan is not None
            grace_end = inv.period_end + timedelta(hours=loaded_plan.plan.grace_period_hours)
            if grace_end <= now:
                inv.status = InvoiceStatus.FINALIZED
                inv.finalized_at = now
                report.finalized += 1
                progressed = True
            elif inv.status is InvoiceStatus.OPEN:
                inv.status = InvoiceStatus.GRACE
                report.to_grace += 1
                progressed = True
        await session.flush()
        if not progressed:
            break
    report.opened = await open_current_periods(session, now=now)
    return report


async def open_current_periods(session: AsyncSession, *, now: datetime) -> int:
    """Every customer on a plan gets its current period's invoice (fees show from day one)."""
    active = list(
        await session.scalars(
            select(PlanAssignment).where(
                col(PlanAssignment.start_time) <= now,
                (col(PlanAssignment.end_time).is_(None)) | (col(PlanAssignment.end_time) > now),
            )
        )
    )
    created: list[Invoice] = []
    by_account: dict[uuid.UUID, list[PlanAssignment]] = defaultdict(list)
    for a in active:
        by_account[a.account_id].append(a)
    for account_id, assignments in by_account.items():
        cache = PlanCache(session, account_id)
        wanted = []
        for a in assignments:
            loaded = await cache.get(a.plan_id)
            period = period_at(
                a.start_time, loaded.plan.period_interval, loaded.plan.period_count, now
            )
            wanted.append((a, period))
        existing = await existing_periods(session, account_id, [a.customer_id for a, _ in wanted])
        for a, period in wanted:
            if (a.customer_id, period.start) in existing:
                continue
            loaded = await cache.get(a.plan_id)
            created.append(await invoice_for(session, account_id, a.customer_id, a, loaded, now))
    if created:
        await rate_batch(session, created, now)
        await session.flush()
    return len(created)
