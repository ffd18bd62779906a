"""Invoice lifecycle: OPEN (running) → GRACE (period over, late events still count for
`grace_period_hours`) → FINALIZED (locked; late events are stored but change nothing billed),
and every customer on a plan has its current period's invoice.

Each function works on one account in the caller's transaction; `period_close` runs them in
short transactions, one account at a time, behind the rollup watermark gate.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import InvalidTransitionError, NotFoundError
from meterflow.models import Invoice, InvoicePayment, InvoiceStatus, PlanAssignment, PricingPlan
from meterflow.services import invoice_payments, invoice_rows, webhook_events, webhook_payloads
from meterflow.services.invoice_rating import PlanCache, rate_batch, rerate_customer
from meterflow.services.invoice_rows import RUNNING, open_invoices


@dataclass
class CloseReport:
    finalized: int = 0
    to_grace: int = 0
    opened: int = 0
    expired_grants: int = 0
    # Accounts left for the next round: rollups could not catch up, or the close raised.
    not_caught_up: list[uuid.UUID] = field(default_factory=list)
    failed: list[uuid.UUID] = field(default_factory=list)
    # Accounts whose invoices finalized or opened: their outbox work (payments, webhooks) can
    # start at once.
    changed: list[uuid.UUID] = field(default_factory=list)

    def add(self, other: CloseReport) -> None:
        self.finalized += other.finalized
        self.to_grace += other.to_grace
        self.opened += other.opened
        self.expired_grants += other.expired_grants
        self.not_caught_up += other.not_caught_up
        self.failed += other.failed
        self.changed += [a for a in other.changed if a not in self.changed]


# Invoices opened by one call: their INSERT binds 16 parameters each (PostgreSQL allows 32,767).
OPEN_AT_MOST = 2000


def _due_at() -> Any:
    """When an invoice's grace ends: its period end plus its plan's grace (an active plan is
    immutable, so this is fixed for the invoice's life)."""
    return col(Invoice.period_end) + func.make_interval(
        0, 0, 0, 0, col(PricingPlan.grace_period_hours)
    )


def _due(account_id: uuid.UUID, now: datetime) -> Any:
    """The account's invoices the close must move: OPEN ones whose period ended (to GRACE or
    FINALIZED), and GRACE ones whose grace is over. A GRACE invoice still in its grace is left to
    the re-rates that follow its usage: the close does not touch it."""
    return (
        select(Invoice)
        .join(
            PricingPlan,
            and_(
                col(PricingPlan.account_id) == col(Invoice.account_id),
                col(PricingPlan.id) == col(Invoice.plan_id),
            ),
        )
        .where(
            col(Invoice.account_id) == account_id,
            or_(
                and_(col(Invoice.status) == InvoiceStatus.OPEN, col(Invoice.period_end) <= now),
                and_(col(Invoice.status) == InvoiceStatus.GRACE, _due_at() <= now),
            ),
        )
    )


async def has_due_invoices(session: AsyncSession, *, account_id: uuid.UUID, now: datetime) -> bool:
    return (await session.scalar(_due(account_id, now).limit(1))) is not None


async def close_due(
    session: AsyncSession, *, account_id: uuid.UUID, now: datetime, batch: int = 2000
) -> tuple[CloseReport, bool]:
    """One batch of the account's due invoices, soonest due first: re-rated, then moved on.
    Returns the report and whether more may be due. The caller must have caught the account's
    rollups up first (see `period_close`): this rates from the rollups as they are."""
    report = CloseReport()
    due = list(
        await session.scalars(
            _due(account_id, now)
            .order_by(_due_at(), col(Invoice.id))
            .limit(batch)
            .with_for_update(of=Invoice, skip_locked=True)
        )
    )
    if not due:
        return report, False
    cache = PlanCache(session, account_id)  # plans load once per batch
    await rate_batch(session, due, now, cache)
    for inv in due:
        loaded = await cache.get(inv.plan_id)
        grace_end = inv.period_end + timedelta(hours=loaded.plan.grace_period_hours)
        if grace_end <= now:
            inv.status = InvoiceStatus.FINALIZED
            inv.finalized_at = now
            report.finalized += 1
        elif inv.status is InvoiceStatus.OPEN:
            inv.status = InvoiceStatus.GRACE
            report.to_grace += 1
    await _finalized(
        session, account_id, [i for i in due if i.status is InvoiceStatus.FINALIZED], now
    )
    # Collection starts in this same transaction (outbox work), or not at all.
    await invoice_payments.on_finalized(session, account_id=account_id, invoices=due, now=now)
    await session.flush()
    return report, len(due) == batch


async def _locked_invoice(
    session: AsyncSession, account_id: uuid.UUID, invoice_id: uuid.UUID
) -> Invoice:
    """The account's invoice, locked for this transaction's change of its status."""
    invoice = await session.scalar(
        select(Invoice)
        .where(col(Invoice.account_id) == account_id, col(Invoice.id) == invoice_id)
        .with_for_update()
    )
    if invoice is None:
        raise NotFoundError(f"no invoice {invoice_id} in this account")
    return invoice


async def finalize_invoice(
    session: AsyncSession, *, account_id: uuid.UUID, invoice_id: uuid.UUID, now: datetime
) -> Invoice:
    """Close an OPEN or GRACE invoice now (an operator's decision, a customer leaving). Its
    period stays as it is; usage of that period arriving later is late, as after a normal close.
    The caller must have caught the account's rollups up first (see `period_close`)."""
    invoice = await _locked_invoice(session, account_id, invoice_id)
    if invoice.status not in RUNNING:
        raise InvalidTransitionError(
            f"invoice {invoice_id} is {invoice.status.value}: only an OPEN or GRACE invoice "
            "can be finalized",
            current_status=invoice.status.value,
        )
    # The careful path: it also notices a plan change under this period (and voids it).
    await rerate_customer(session, account_id=account_id, customer_id=invoice.customer_id, now=now)
    if invoice.status is InvoiceStatus.VOID:
        raise InvalidTransitionError(
            f"invoice {invoice_id} is VOID: the customer's plan no longer covers its period",
            current_status=invoice.status.value,
        )
    invoice.status = InvoiceStatus.FINALIZED
    invoice.finalized_at = invoice.updated_at = now
    await _finalized(session, account_id, [invoice], now)
    await invoice_payments.on_finalized(session, account_id=account_id, invoices=[invoice], now=now)
    await session.flush()
    return invoice


VOIDABLE = (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE)


async def void_invoice(
    session: AsyncSession, *, account_id: uuid.UUID, invoice_id: uuid.UUID, now: datetime
) -> Invoice:
    """Cancel a closed bill (an operator's decision): the customer owes nothing for it, the
    credits it drew go back to the wallet, `invoice.voided` goes out. A running invoice is
    finalized first; one collected through Stripe is voided there (meterflow follows Stripe's
    invoice.voided), so the two never disagree."""
    invoice = await _locked_invoice(session, account_id, invoice_id)
    if invoice.status not in VOIDABLE:
        raise InvalidTransitionError(
            f"invoice {invoice_id} is {invoice.status.value}: only a FINALIZED or UNCOLLECTIBLE "
            "invoice can be voided (finalize a running one first; a paid one is refunded, "
            "not voided)",
            current_status=invoice.status.value,
        )
    collected = await session.scalar(
        select(col(InvoicePayment.invoice_id)).where(
            col(InvoicePayment.account_id) == account_id,
            col(InvoicePayment.invoice_id) == invoice_id,
        )
    )
    if collected is not None:
        raise InvalidTransitionError(
            f"invoice {invoice_id} is collected through Stripe: void it there (meterflow "
            "follows Stripe's invoice.voided)",
            current_status=invoice.status.value,
        )
    await invoice_rows.void(session, invoice, now)
    await session.flush()
    return invoice


async def _finalized(
    session: AsyncSession, account_id: uuid.UUID, invoices: list[Invoice], now: datetime
) -> None:
    await webhook_events.notify(
        session,
        account_id=account_id,
        event_type="invoice.finalized",
        build=lambda: [({"invoice": webhook_payloads.invoice(i)}, str(i.id)) for i in invoices],
        now=now,
    )


async def open_current_periods(
    session: AsyncSession, *, account_id: uuid.UUID, now: datetime, limit: int | None = None
) -> int:
    """Every customer of the account on a plan gets its current period's invoice (fees show
    from day one): up to `limit` of them per call (and never more than OPEN_AT_MOST), so a
    caller can keep transactions short; call again until it returns fewer.
    Only customers with no invoice covering `now` are read (the current period's invoice, if
    it exists, covers now), so a run with nothing to open costs one indexed query."""
    covered = (
        select(col(Invoice.id))
        .where(
            col(Invoice.account_id) == col(PlanAssignment.account_id),
            col(Invoice.customer_id) == col(PlanAssignment.customer_id),
            col(Invoice.period_start) <= now,
            col(Invoice.period_end) > now,
        )
        .exists()
    )
    query = (
        select(PlanAssignment)
        .where(
            col(PlanAssignment.account_id) == account_id,
            col(PlanAssignment.start_time) <= now,
            (col(PlanAssignment.end_time).is_(None)) | (col(PlanAssignment.end_time) > now),
            ~covered,
        )
        .order_by(col(PlanAssignment.customer_id))
    )
    query = query.limit(min(limit or OPEN_AT_MOST, OPEN_AT_MOST))
    missing = list(await session.scalars(query))
    if not missing:
        return 0
    cache = PlanCache(session, account_id)
    created = await open_invoices(
        session, account_id, [(a, await cache.get(a.plan_id)) for a in missing], now
    )
    await rate_batch(session, created, now, cache)
    await session.flush()
    return len(created)
