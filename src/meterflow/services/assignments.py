"""Plan assignments: which plan a customer is on, from when to when (one at a time), and new
customers joining the account's default plan."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import InvalidTransitionError, NotFoundError
from meterflow.models import Customer, PlanAssignment, PlanStatus
from meterflow.services import plans, webhook_events, webhook_payloads
from meterflow.services.periods import floor_interval
from meterflow.services.validation import utc_time

# No event is older than 2000; a period (up to 120 years) must end inside datetime's range.
ASSIGNMENTS_FROM = datetime(2000, 1, 1, tzinfo=UTC)
ASSIGNMENTS_UNTIL = datetime(9000, 1, 1, tzinfo=UTC)


async def assign_plan(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    plan_id: uuid.UUID,
    start_time: datetime | None,
    now: datetime,
) -> PlanAssignment:
    """Put a customer on a plan from `start_time` (default: the start of the current period).
    A later-starting assignment is replaced; the current one ends where this one starts."""
    loaded = await plans.required(session, account_id, plan_id)
    if loaded.plan.status is not PlanStatus.ACTIVE:
        raise InvalidTransitionError(
            f"plan {plan_id} is {loaded.plan.status}: only an ACTIVE plan can be assigned",
            current_status=loaded.plan.status,
        )
    if start_time is not None:
        # Every period up to now gets an invoice, and periods are computed to their end.
        start_time = utc_time(
            start_time, field="startTime", earliest=ASSIGNMENTS_FROM, latest=ASSIGNMENTS_UNTIL
        )
    # Read directly, not through `customers`: that module assigns default plans through this one.
    customer = await session.scalar(
        select(col(Customer.id)).where(
            col(Customer.account_id) == account_id, col(Customer.customer_id) == customer_id
        )
    )
    if customer is None:
        raise NotFoundError(f"no customer {customer_id!r} in this account")
    start = start_time or floor_interval(now, loaded.plan.period_interval)
    await session.execute(
        delete(PlanAssignment).where(
            col(PlanAssignment.account_id) == account_id,
            col(PlanAssignment.customer_id) == customer_id,
            col(PlanAssignment.start_time) >= start,
        )
    )
    await session.execute(
        update(PlanAssignment)
        .where(
            col(PlanAssignment.account_id) == account_id,
            col(PlanAssignment.customer_id) == customer_id,
            (col(PlanAssignment.end_time).is_(None)) | (col(PlanAssignment.end_time) > start),
        )
        .values(end_time=start)
    )
    assignment = PlanAssignment(
        account_id=account_id, customer_id=customer_id, plan_id=plan_id, start_time=start
    )
    session.add(assignment)
    await session.flush()
    await _assigned(session, account_id, [assignment], now)
    return assignment


async def _assigned(
    session: AsyncSession, account_id: uuid.UUID, rows: list[PlanAssignment], now: datetime
) -> None:
    await webhook_events.notify(
        session,
        account_id=account_id,
        event_type="plan.assigned",
        build=lambda: [
            ({"assignment": webhook_payloads.assignment(a)}, a.customer_id) for a in rows
        ],
        now=now,
    )


async def assign_default_plan(
    session: AsyncSession, *, account_id: uuid.UUID, customer_ids: set[str], now: datetime
) -> int:
    """New customers join the account's default plan, from the start of the current period."""
    plan = await plans.default_plan(session, account_id)
    if plan is None or not customer_ids:
        return 0
    start = floor_interval(now, plan.period_interval)
    rows = [
        PlanAssignment(
            account_id=account_id, customer_id=customer_id, plan_id=plan.id, start_time=start
        )
        for customer_id in sorted(customer_ids)
    ]
    session.add_all(rows)
    await session.flush()
    await _assigned(session, account_id, rows, now)
    return len(customer_ids)


async def assignment_at(
    session: AsyncSession, *, account_id: uuid.UUID, customer_id: str, moment: datetime
) -> PlanAssignment | None:
    return await session.scalar(
        select(PlanAssignment)
        .where(
            col(PlanAssignment.account_id) == account_id,
            col(PlanAssignment.customer_id) == customer_id,
            col(PlanAssignment.start_time) <= moment,
            (col(PlanAssignment.end_time).is_(None)) | (col(PlanAssignment.end_time) > moment),
        )
        .order_by(col(PlanAssignment.start_time).desc())
        .limit(1)
    )
