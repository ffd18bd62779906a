"""The figure an alert rule watches, per customer: usage of a meter over a period, cost (what
an invoice charges before credits) or the prepaid balance of one wallet; whether it crossed the
rule's line, and how the alert says so.

Every query binds its customers as one array parameter: a rule for every customer of an
account names them all, past PostgreSQL's 32,767 bind parameters."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.models import AlertRule, Customer, Invoice, InvoiceStatus, Meter
from meterflow.pricing.money import quantum
from meterflow.services import usage, wallets
from meterflow.services.sql import any_text
from meterflow.services.timebuckets import Grouping

ZERO = Decimal(0)
HUNDRED = Decimal(100)


@dataclass(frozen=True)
class Figure:
    value: Decimal
    currency: str | None = None  # None: a usage figure, in the meter's own unit

    def shown(self) -> str:
        """`4.00 EUR`, `300 CREDITS`, `1100`: money at its currency's minor unit when that is
        exact (a figure is never rounded in a message)."""
        if self.currency is None:
            return str(self.value)
        step = quantum(self.currency)
        exact = self.value.quantize(step) if self.value == self.value.quantize(step) else None
        return f"{exact if exact is not None else self.value} {self.currency}"


async def usage_over(
    session: AsyncSession,
    rule: AlertRule,
    customers: list[str],
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, Figure]:
    """Every customer named gets a figure: no usage is 0 (a drop to nothing is a drop)."""
    meter = await session.scalar(
        select(Meter).where(
            col(Meter.account_id) == rule.account_id, col(Meter.id) == rule.meter_id
        )
    )
    if meter is None:
        return {}
    answer = await usage.query_usage(
        session,
        account_id=rule.account_id,
        now=now,
        query=usage.UsageQuery(
            meter.meter_api_name,
            Grouping(rule.range),
            start,
            end,
            group_by=(usage.CUSTOMER,),
            filter={usage.CUSTOMER: customers},
        ),
        limits=usage.INTERNAL,  # every customer of a rule: sized by the data, not a caller
    )
    totals = {g.group[usage.CUSTOMER]: g.total for g in answer.groups}
    return {c: Figure(totals.get(c, ZERO)) for c in customers}


# Only the columns a cost needs: a rule over every customer reads every invoice of a period,
# and whole rows (lines as JSON) take ten times as long to load.
_COST = select(
    col(Invoice.customer_id), col(Invoice.subtotal), col(Invoice.discount), col(Invoice.currency)
)


async def _costs(session: AsyncSession, query: Any) -> dict[str, Figure]:
    return {
        row.customer_id: Figure(Decimal(row.subtotal) - Decimal(row.discount), row.currency)
        for row in await session.execute(query)
    }


async def running_cost(
    session: AsyncSession, rule: AlertRule, customers: list[str], now: datetime
) -> dict[str, Figure]:
    """The invoice running now, for customers that have one."""
    return await _costs(
        session,
        _COST.where(
            col(Invoice.account_id) == rule.account_id,
            col(Invoice.customer_id) == any_text(customers),
            col(Invoice.status).in_((InvoiceStatus.OPEN, InvoiceStatus.GRACE)),
            col(Invoice.period_start) <= now,
            col(Invoice.period_end) > now,
        ),
    )


async def period_cost(
    session: AsyncSession,
    rule: AlertRule,
    customers: list[str] | None,
    start: datetime,
    end: datetime,
) -> dict[str, Figure]:
    """The invoice of the billing period [start, end) exactly, whatever its status (running,
    in grace, finalized, paid) but void. Customers billed on other periods have none: their
    invoices have no figure for this range. `customers` None: every customer of the account."""
    query = _COST.where(
        col(Invoice.account_id) == rule.account_id,
        col(Invoice.period_start) == start,
        col(Invoice.period_end) == end,
        col(Invoice.status) != InvoiceStatus.VOID,
    )
    if customers is not None:
        query = query.where(col(Invoice.customer_id) == any_text(customers))
    return await _costs(session, query)


async def balances(
    session: AsyncSession, rule: AlertRule, customers: list[str], now: datetime
) -> dict[str, Figure]:
    """The balance now of each customer's wallet in the rule's currency."""
    currency = rule.currency
    if currency is None:  # create_rule and migration 0012 give every BALANCE rule its wallet
        raise ValueError(f"BALANCE rule {rule.id} names no currency")
    return {
        c: Figure(
            await wallets.balance(
                session, account_id=rule.account_id, customer_id=c, currency=currency, now=now
            ),
            currency,
        )
        for c in customers
    }


async def figures(
    session: AsyncSession,
    rule: AlertRule,
    customers: list[str] | None,
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, Figure]:
    """The rule's subject per customer for the period [start, end). `customers` None: every
    customer of the account."""
    if rule.subject == "COST" and rule.condition == "PERCENT_CHANGE":
        # Period against period, each one's invoice; None lists no customers at all.
        return await period_cost(session, rule, customers, start, end)
    if customers is None:
        customers = list(
            await session.scalars(
                select(col(Customer.customer_id)).where(col(Customer.account_id) == rule.account_id)
            )
        )
    if rule.subject == "USAGE":
        return await usage_over(session, rule, customers, start, end, now)
    if rule.subject == "COST":
        return await running_cost(session, rule, customers, now)
    return await balances(session, rule, customers, now)


def _change(value: Decimal, previous: Decimal) -> Decimal:
    return (value - previous) / previous * HUNDRED


def crossed(rule: AlertRule, value: Decimal, previous: Decimal | None) -> bool:
    threshold = Decimal(rule.threshold)
    if rule.condition == "GREATER_THAN":
        return value > threshold
    if rule.condition == "LESS_THAN":
        return value < threshold
    if previous is None or previous == 0:
        return False  # no previous figure, or no change in percent from nothing
    change = _change(value, previous)
    return change <= threshold if threshold < 0 else change >= threshold


def message(rule: AlertRule, customer: str, figure: Figure, previous: Figure | None) -> str:
    what = {"USAGE": "usage", "COST": "cost", "BALANCE": "prepaid balance"}[rule.subject]
    said = f"{rule.name}: {customer}'s {what} this {rule.range.lower()} is {figure.shown()}"
    if rule.condition == "PERCENT_CHANGE" and previous is not None:
        change = _change(figure.value, previous.value).quantize(Decimal("0.1"))
        return f"{said} ({change:+}% vs {previous.shown()} the previous one)"
    relation = "above" if rule.condition == "GREATER_THAN" else "below"
    threshold = Figure(Decimal(rule.threshold), figure.currency)
    return f"{said}, {relation} {threshold.shown()}"
