"""How finalized invoices are collected: a payment row per invoice of a Stripe-connected
account, written in the transaction that finalizes it, with the sync to Stripe as outbox work
of that same transaction. Stripe's webhooks then move the payment and the invoice on.

Zero-amount invoices (everything covered by credits or discounts) are never sent: they are
PAID at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.models import Invoice, InvoicePayment, InvoiceStatus, PaymentStatus
from meterflow.services import invoice_rows, outbox, stripe_connections

PROVIDER = "stripe"


async def on_finalized(
    session: AsyncSession, *, account_id: uuid.UUID, invoices: Sequence[Invoice], now: datetime
) -> int:
    """Start collecting these just-finalized invoices, if the account collects through Stripe.
    Returns how many were handed to the sync. Idempotent (one payment row per invoice)."""
    finalized = [i for i in invoices if i.status is InvoiceStatus.FINALIZED]
    if not finalized:
        return 0
    if await stripe_connections.get(session, account_id=account_id) is None:
        return 0
    due = [i for i in finalized if i.total > 0]
    for invoice in finalized:
        if invoice.total <= 0:
            invoice.status = InvoiceStatus.PAID
            invoice.updated_at = now
            await invoice_rows.invoice_event(session, invoice, "invoice.paid", now)
    rows = [
        {
            "account_id": account_id,
            "invoice_id": invoice.id,
            "provider": PROVIDER,
            "status": PaymentStatus.PENDING if invoice.total > 0 else PaymentStatus.PAID,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        }
        for invoice in finalized
    ]
    await session.execute(
        insert(InvoicePayment)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["account_id", "invoice_id"])
    )
    await outbox.add(
        session,
        account_id=account_id,
        kind=outbox.SYNC_INVOICE,
        items={str(invoice.id): {} for invoice in due},
    )
    await session.flush()
    return len(due)


async def payments_of(
    session: AsyncSession, *, account_id: uuid.UUID, invoice_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, InvoicePayment]:
    if not invoice_ids:
        return {}
    rows = await session.scalars(
        select(InvoicePayment).where(
            col(InvoicePayment.account_id) == account_id,
            col(InvoicePayment.invoice_id).in_(list(invoice_ids)),
        )
    )
    return {row.invoice_id: row for row in rows}


async def _locked(
    session: AsyncSession, account_id: uuid.UUID, invoice_id: uuid.UUID
) -> tuple[Invoice | None, InvoicePayment | None]:
    invoice = await session.scalar(
        select(Invoice)
        .where(col(Invoice.account_id) == account_id, col(Invoice.id) == invoice_id)
        .with_for_update()
    )
    payment = await session.scalar(
        select(InvoicePayment)
        .where(
            col(InvoicePayment.account_id) == account_id,
            col(InvoicePayment.invoice_id) == invoice_id,
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return invoice, payment


# What each Stripe outcome makes of the invoice and its payment. A closed invoice (PAID, VOID,
# UNCOLLECTIBLE) is never reopened by a late or out-of-order event.
_INVOICE_AFTER = {
    PaymentStatus.PAID: InvoiceStatus.PAID,
    PaymentStatus.UNCOLLECTIBLE: InvoiceStatus.UNCOLLECTIBLE,
    PaymentStatus.VOID: InvoiceStatus.VOID,
}
_MOVABLE = {
    PaymentStatus.PAID: (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE),
    PaymentStatus.UNCOLLECTIBLE: (InvoiceStatus.FINALIZED,),
    PaymentStatus.VOID: (InvoiceStatus.FINALIZED, InvoiceStatus.UNCOLLECTIBLE),
    PaymentStatus.FAILED: (InvoiceStatus.FINALIZED,),
}


async def settle(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    invoice_id: uuid.UUID,
    status: PaymentStatus,
    now: datetime,
    external_id: str | None = None,
    attempts: int | None = None,
    error: str | None = None,
) -> Invoice | None:
    """Stripe says the invoice is paid, failed, uncollectible or void: move the payment and the
    invoice. Returns the invoice if anything changed. A void gives its credits back."""
    invoice, payment = await _locked(session, account_id, invoice_id)
    if invoice is None or invoice.status not in _MOVABLE[status]:
        return None
    if payment is None:
        payment = InvoicePayment(
            account_id=account_id,
            invoice_id=invoice_id,
            provider=PROVIDER,
            status=status,
            external_id=external_id,
            created_at=now,
        )
        session.add(payment)
    payment.status = status
    payment.updated_at = now
    if attempts is not None:
        payment.attempts = max(payment.attempts, attempts)
    if error is not None:
        payment.last_error = error[:500]
    if status is PaymentStatus.VOID:
        await invoice_rows.void(session, invoice, now)  # invoice.voided, credits given back
    elif status in _INVOICE_AFTER:
        invoice.status = _INVOICE_AFTER[status]
        invoice.updated_at = now
    else:
        invoice.updated_at = now  # the payment moved: subscribers re-read the invoice
    await session.flush()
    if status in _EVENTS:
        await invoice_rows.invoice_event(session, invoice, _EVENTS[status], now)
    return invoice


_EVENTS = {PaymentStatus.PAID: "invoice.paid", PaymentStatus.FAILED: "invoice.payment_failed"}
