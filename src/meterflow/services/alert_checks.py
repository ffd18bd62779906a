"""What an alert rule must be to be judged: the wallet a BALANCE rule watches, and whether a
PERCENT_CHANGE rule has a previous period's figure to compare with. Used at creation."""

from __future__ import annotations

import re
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.errors import ValidationError
from meterflow.models import PricingPlan
from meterflow.services import assignments, plans

# An ISO 4217 code or a custom credit unit, as wallets store them (credit_grants.currency).
WALLET_UNIT = re.compile(r"[A-Z0-9_]{1,20}")


async def _plan_of(
    session: AsyncSession, account_id: uuid.UUID, customer_id: str | None, now: datetime
) -> PricingPlan | None:
    if customer_id is None:
        return None
    assignment = await assignments.assignment_at(
        session, account_id=account_id, customer_id=customer_id, moment=now
    )
    if assignment is None:
        return None
    loaded = await plans.load_plan(session, account_id=account_id, plan_id=assignment.plan_id)
    return loaded.plan if loaded is not None else None


async def wallet_currency(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    currency: str | None,
    customer_id: str | None,
    now: datetime,
) -> str:
    """A BALANCE rule watches one wallet and its threshold is in that wallet's unit: the
    currency named, else the named customer's plan currency, else the account's default
    plan's. Fixed at creation, so the threshold keeps its meaning when plans change."""
    if currency is not None:
        unit = currency.strip().upper()
        if not WALLET_UNIT.fullmatch(unit):
            raise ValidationError(
                "currency must be an ISO code or a custom credit unit of 1-20 letters, "
                "digits or _ (e.g. EUR, CREDITS)",
                field="currency",
            )
        return unit
    plan = await _plan_of(session, account_id, customer_id, now)
    plan = plan or await plans.default_plan(session, account_id)
    if plan is None:
        raise ValidationError(
            "a BALANCE rule names the currency of the wallet it watches (there is no plan "
            "to take it from)",
            field="currency",
        )
    return plan.currency


async def check_comparable(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    subject: str,
    range: str,
    customer_id: str | None,
    now: datetime,
) -> None:
    """A PERCENT_CHANGE rule compares a period's figure with the previous period's: refuse
    the rules for which that figure cannot exist."""
    if subject == "BALANCE":
        raise ValidationError(
            "a BALANCE rule cannot use PERCENT_CHANGE: a prepaid balance is a figure at one "
            "moment, not over a period, so there is no previous period's balance to compare "
            "with; use LESS_THAN or GREATER_THAN",
            field="condition",
        )
    if subject != "COST":
        return
    if range == "HOUR":
        raise ValidationError(
            "a COST rule with PERCENT_CHANGE compares the invoice of a billing period with the "
            "previous one, and no plan bills by the HOUR: use DAY, WEEK or MONTH",
            field="range",
        )
    plan = await _plan_of(session, account_id, customer_id, now)
    if plan is not None and (plan.period_interval.value, plan.period_count) != (range, 1):
        every = f"{plan.period_count} {plan.period_interval.value}"
        raise ValidationError(
            f"customer {customer_id!r} is billed every {every}: it has no invoice per {range} "
            "to compare; a COST rule with PERCENT_CHANGE takes the billing period as its range",
            field="range",
        )
