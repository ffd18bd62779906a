"""Service-level set-up shared by the billing tests: an account whose one meter is priced per
unit, and customers put on its plan."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.models import MeterType, PeriodInterval
from meterflow.pricing.invoice import Fee
from meterflow.services import accounts, assignments, customers, meters, plans
from meterflow.services.meters import MeterSpec
from meterflow.services.plans import ItemSpec, PlanSpec

METER = "calls"


async def per_unit_account(
    session: AsyncSession,
    *,
    name: str,
    unit_price: str,
    now: datetime,
    interval: PeriodInterval = PeriodInterval.MONTH,
    currency: str = "USD",
    grace_hours: int = 0,
    is_default: bool = False,
    fee: Decimal | None = None,
) -> tuple[uuid.UUID, uuid.UUID]:
    """A new account with one SUM meter `calls` and an ACTIVE plan charging `unit_price` per
    call (and a `platform` fee, if given): (account id, plan id)."""
    account = await accounts.create_account(session, name=name)
    await meters.create_meter(
        session, account_id=account.id, meter_api_name=METER, spec=MeterSpec(METER, MeterType.SUM)
    )
    plan = await plans.create_plan(
        session,
        account_id=account.id,
        spec=PlanSpec(
            name="p",
            currency=currency,
            interval=interval,
            grace_period_hours=grace_hours,
            is_default=is_default,
            items=(ItemSpec(METER, {"type": "per_unit", "unitPrice": unit_price}),),
            fees=(Fee("platform", fee),) if fee is not None else (),
        ),
    )
    await plans.activate_plan(session, account_id=account.id, plan_id=plan.plan.id, now=now)
    return account.id, plan.plan.id


async def put_on_plan(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    plan_id: uuid.UUID,
    customer_ids: Iterable[str],
    start: datetime | None,
    now: datetime,
) -> None:
    """Create the customers and assign them the plan from `start` (None: the current period)."""
    for customer_id in customer_ids:
        await customers.create_customer(
            session, account_id=account_id, customer_id=customer_id, now=now
        )
        await assignments.assign_plan(
            session,
            account_id=account_id,
            customer_id=customer_id,
            plan_id=plan_id,
            start_time=start,
            now=now,
        )
