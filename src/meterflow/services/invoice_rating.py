"""Invoice rating: usage → amounts on the running invoices (OPEN and GRACE), one customer at a
time or in batches. Finalized invoices are never touched."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import any_, bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.models import CreditGrant, Invoice, MeterType, PlanAssignment
from meterflow.pricing import invoice as pricing
from meterflow.pricing.models import ByDimension, Percentage, parse_price_model
from meterflow.pricing.rating import DimensionUsage
from meterflow.services import assignments, plans, usage, wallets, webhook_events, webhook_payloads
from meterflow.services.invoice_rows import EPSILON, RUNNING, backfill, existing_periods, void
from meterflow.services.periods import covered_share, period_at
from meterflow.services.sql import any_text
from meterflow.services.timebuckets import Grouping


def _needs_counts(model: Any) -> bool:
    if isinstance(model, Percentage):
        return True
    return isinstance(model, ByDimension) and any(
        isinstance(m, Percentage) for m in [*(m for _, m in model.prices), model.default]
    )


async def usage_for(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    loaded: plans.LoadedPlan,
    customer_ids: list[str],
    start: datetime,
    end: datetime,
    now: datetime,
) -> dict[str, dict[str, pricing.ItemUsage]]:
    """Each customer's usage of each plan item over [start, end): one query per item."""
    result: dict[str, dict[str, pricing.ItemUsage]] = defaultdict(dict)
    for item, meter in loaded.items:
        model = parse_price_model(item.price_model)
        dims = model.dimensions if isinstance(model, ByDimension) else ()
        query = usage.UsageQuery(
            meter.meter_api_name,
            Grouping.MONTH,
            start,
            end,
            group_by=(usage.CUSTOMER, *dims),
            filter={usage.CUSTOMER: customer_ids},
        )
        # Sized by the plan's customers, not by a caller: no request limits.
        answer = await usage.query_usage(
            session, account_id=account_id, query=query, now=now, limits=usage.INTERNAL
        )
        counts: dict[tuple[str, ...], int] = {}
        if _needs_counts(model):
            counted = await usage.query_usage(
                session,
                account_id=account_id,
                now=now,
                query=usage.UsageQuery(**{**query.__dict__, "aggregation": MeterType.COUNT}),
                limits=usage.INTERNAL,
            )
            counts = {tuple(g.group.values()): int(g.total) for g in counted.groups}
        per_customer: dict[str, list[tuple[tuple[str, ...], Decimal, int]]] = defaultdict(list)
        for group in answer.groups:
            key = tuple(group.group.values())
            per_customer[key[0]].append((key[1:], group.total, counts.get(key, 0)))
        for customer_id, rows in per_customer.items():
            if dims:
                result[customer_id][meter.meter_api_name] = pricing.ItemUsage(
                    units=sum((r[1] for r in rows), Decimal(0)),
                    events=sum(r[2] for r in rows),
                    by_dimension=tuple(DimensionUsage(v, total, n) for v, total, n in rows),
                )
            else:
                ((_, total, n),) = rows
                result[customer_id][meter.meter_api_name] = pricing.ItemUsage(total, n)
    return result


def _decimal(value: Decimal) -> str:
    return str(value)


def lines_json(amounts: pricing.Amounts) -> list[dict[str, Any]]:
    return [
        {
            "kind": line.kind.value,
            "name": line.name,
            "meterApiName": line.meter_api_name,
            "dimensions": line.dimensions,
            "units": _decimal(line.units),
            "billableUnits": _decimal(line.billable_units),
            "amount": _decimal(line.amount),
            "priced": line.priced,
            "tiers": [
                {
                    "tier": t.tier,
                    "quantity": _decimal(t.quantity),
                    "unitPrice": _decimal(t.unit_price),
                    "flatFee": _decimal(t.flat_fee),
                    "amount": _decimal(t.amount),
                }
                for t in line.tiers
            ],
        }
        for line in amounts.lines
    ]


async def apply_rating(
    session: AsyncSession,
    invoice: Invoice,
    loaded: plans.LoadedPlan,
    assignment: PlanAssignment,
    used: dict[str, pricing.ItemUsage],
    now: datetime,
    *,
    has_credit: bool = True,
) -> Invoice:
    plan = loaded.plan
    period = period_at(
        assignment.start_time, plan.period_interval, plan.period_count, invoice.period_start
    )
    facts = pricing.PeriodFacts(
        index=period.index, covered=covered_share(period, assignment.start_time)
    )
    amounts = pricing.price(loaded.terms(), used, facts)
    credits = Decimal(0)
    if has_credit:
        credits = await wallets.draw(
            session,
            account_id=invoice.account_id,
            customer_id=invoice.customer_id,
            currency=plan.currency,
            invoice_id=invoice.id,
            due=amounts.due_before_credits,
            now=now,
        )
    before = (invoice.subtotal, invoice.discount, invoice.credits_applied, invoice.total)
    invoice.plan_id = plan.id
    invoice.assignment_id = assignment.id
    invoice.currency = plan.currency
    invoice.lines = lines_json(amounts)
    invoice.discounts = [{"name": d.name, "amount": _decimal(d.amount)} for d in amounts.discounts]
    invoice.subtotal = amounts.subtotal
    invoice.discount = amounts.discount
    invoice.credits_applied = credits
    invoice.total = amounts.due_before_credits - credits
    invoice.updated_at = now
    invoice.version = (invoice.version or 0) + 1
    after = (invoice.subtotal, invoice.discount, invoice.credits_applied, invoice.total)
    if after != before and invoice.status in RUNNING:
        # Opt-in, and at most once a minute per invoice (webhook_events throttles it).
        await webhook_events.notify(
            session,
            account_id=invoice.account_id,
            event_type="invoice.updated",
            build=lambda: [({"invoice": webhook_payloads.invoice(invoice)}, str(invoice.id))],
            now=now,
        )
    return invoice


class PlanCache:
    def __init__(self, session: AsyncSession, account_id: uuid.UUID) -> None:
        self.session, self.account_id = session, account_id
        self._plans: dict[uuid.UUID, plans.LoadedPlan] = {}

    async def get(self, plan_id: uuid.UUID) -> plans.LoadedPlan:
        if plan_id not in self._plans:
            loaded = await plans.load_plan(
                self.session, account_id=self.account_id, plan_id=plan_id
            )
            assert loaded is not None
            self._plans[plan_id] = loaded
        return self._plans[plan_id]


async def rerate_customer(
    session: AsyncSession, *, account_id: uuid.UUID, customer_id: str, now: datetime
) -> list[Invoice]:
    """Bring the customer's running invoices up to date with its usage (and open the current
    period's invoice if the customer is on a plan). Finalized invoices are never touched."""
    cache = PlanCache(session, account_id)
    current = await assignments.assignment_at(
        session, account_id=account_id, customer_id=customer_id, moment=now
    )
    if current is not None:
        await backfill(
            session, account_id, customer_id, current, await cache.get(current.plan_id), now
        )
    running = list(
        await session.scalars(
            select(Invoice)
            .where(
                col(Invoice.account_id) == account_id,
                col(Invoice.customer_id) == customer_id,
                col(Invoice.status).in_(RUNNING),
            )
            .order_by(col(Invoice.period_start))
            .with_for_update()
        )
    )
    rated = []
    for invoice in running:
        moment = min(now, invoice.period_end - EPSILON)
        assignment = await assignments.assignment_at(
            session, account_id=account_id, customer_id=customer_id, moment=moment
        )
        if assignment is None:
            await void(session, invoice, now)
            continue
        loaded = await cache.get(assignment.plan_id)
        plan = loaded.plan
        period = period_at(assignment.start_time, plan.period_interval, plan.period_count, moment)
        if period.start != invoice.period_start:  # the plan changed under this period
            await void(session, invoice, now)
            continue
        used = await usage_for(
            session,
            account_id=account_id,
            loaded=loaded,
            customer_ids=[customer_id],
            start=invoice.period_start,
            end=invoice.period_end,
            now=now,
        )
        rated.append(
            await apply_rating(session, invoice, loaded, assignment, used.get(customer_id, {}), now)
        )
    await session.flush()
    return rated


async def rerate_customers(
    session: AsyncSession, *, account_id: uuid.UUID, customer_ids: list[str], now: datetime
) -> int:
    """rerate_customer for many customers at once, as the worker needs after a rollup step:
    one usage query per plan item for all of them instead of several queries per customer."""
    if not customer_ids:
        return 0
    cache = PlanCache(session, account_id)
    current: dict[str, PlanAssignment] = {}
    for a in await session.scalars(
        select(PlanAssignment)
        .where(
            col(PlanAssignment.account_id) == account_id,
            col(PlanAssignment.customer_id) == any_text(customer_ids),
            col(PlanAssignment.start_time) <= now,
            (col(PlanAssignment.end_time).is_(None)) | (col(PlanAssignment.end_time) > now),
        )
        .order_by(col(PlanAssignment.start_time))
    ):
        current[a.customer_id] = a  # the latest-starting one wins
    periods = {}
    for customer_id, assignment in current.items():
        plan = (await cache.get(assignment.plan_id)).plan
        periods[customer_id] = period_at(
            assignment.start_time, plan.period_interval, plan.period_count, now
        )
    have = await existing_periods(session, account_id, list(periods))
    for customer_id, period in periods.items():
        if (customer_id, period.start) not in have:
            assignment = current[customer_id]
            await backfill(
                session,
                account_id,
                customer_id,
                assignment,
                await cache.get(assignment.plan_id),
                now,
            )
    running = list(
        await session.scalars(
            select(Invoice)
            .where(
                col(Invoice.account_id) == account_id,
                col(Invoice.customer_id) == any_text(customer_ids),
                col(Invoice.status).in_(RUNNING),
            )
            .order_by(col(Invoice.customer_id), col(Invoice.period_start))
            .with_for_update()
        )
    )
    fits: list[Invoice] = []
    for invoice in running:
        its_period = periods.get(invoice.customer_id)
        its_assignment = current.get(invoice.customer_id)
        if (
            its_period is not None
            and its_assignment is not None
            and invoice.period_start == its_period.start
        ):
            invoice.plan_id, invoice.assignment_id = its_assignment.plan_id, its_assignment.id
            fits.append(invoice)
        else:  # an older period still in grace, or a plan change: the careful path
            await rerate_customer(
                session, account_id=account_id, customer_id=invoice.customer_id, now=now
            )
    await rate_batch(session, fits, now)
    await session.flush()
    return len(fits)


async def _customers_with_credit(
    session: AsyncSession, account_id: uuid.UUID, customer_ids: list[str]
) -> set[str]:
    return set(
        await session.scalars(
            select(col(CreditGrant.customer_id))
            .distinct()
            .where(
                col(CreditGrant.account_id) == account_id,
                col(CreditGrant.customer_id) == any_text(customer_ids),
            )
        )
    )


async def rate_batch(
    session: AsyncSession, invoices: list[Invoice], now: datetime, cache: PlanCache | None = None
) -> None:
    """Re-rate invoices in bulk: one usage query per plan item per (plan, period). A caller that
    rates one account's invoices passes its `cache` so each plan loads once."""
    groups: dict[tuple[uuid.UUID, uuid.UUID, datetime, datetime], list[Invoice]] = defaultdict(list)
    for inv in invoices:
        groups[(inv.account_id, inv.plan_id, inv.period_start, inv.period_end)].append(inv)
    for (account_id, plan_id, start, end), members in groups.items():
        if cache is None or cache.account_id != account_id:
            cache = PlanCache(session, account_id)
        loaded = await cache.get(plan_id)
        ids = [inv.customer_id for inv in members]
        used = await usage_for(
            session,
            account_id=account_id,
            loaded=loaded,
            customer_ids=ids,
            start=start,
            end=end,
            now=now,
        )
        with_credit = await _customers_with_credit(session, account_id, ids)
        assignments = {
            a.id: a
            for a in await session.scalars(
                select(PlanAssignment).where(
                    col(PlanAssignment.account_id) == account_id,
                    col(PlanAssignment.id)
                    == any_(
                        bindparam(
                            None,
                            list({inv.assignment_id for inv in members}),
                            type_=ARRAY(UUID(as_uuid=True)),
                        )
                    ),
                )
            )
        }
        for inv in members:
            await apply_rating(
                session,
                inv,
                loaded,
                assignments[inv.assignment_id],
                used.get(inv.customer_id, {}),
                now,
                has_credit=inv.customer_id in with_credit,
            )
