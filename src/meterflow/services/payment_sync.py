"""Sending an invoice or a top-up to Stripe, step by step, resumable.

Like period_close, this module opens its own short transactions (from a session factory): each
Stripe step's result is stored as soon as it is known, and no transaction stays open across a
call to Stripe. Every POST carries an Idempotency-Key derived from the meterflow id and the
step, so a crash between steps — or a lost answer — followed by the retry makes Stripe replay
the first answer: never a second customer, invoice or item.

  1. the Stripe Customer, created on first need (key: the customer row), kept on the customer;
  2. the Stripe Invoice: charge_automatically when the account says so and the customer has a
     default payment method, else send_invoice with days_until_due (Stripe emails its hosted
     page); the choice is stored before the call, so the retry sends the same parameters;
  3. one invoice item per line, discount and credit (minor units, summing to the amount due);
  4. finalize (and for a top-up charged automatically, pay).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from meterflow.db import unit_of_work
from meterflow.models import (
    CollectionMethod,
    Customer,
    Invoice,
    InvoicePayment,
    PaymentStatus,
    TopUp,
    TopUpStatus,
)
from meterflow.payments.gateway import PaymentError, StripeGateway, StripeInvoice
from meterflow.payments.items import Charge, charges, minor_units
from meterflow.secretbox import SecretBox
from meterflow.services import stripe_connections, top_ups

SessionFactory = async_sessionmaker[AsyncSession]
# Called after each Stripe call succeeds and before its result is stored: tests raise here to
# crash the sync between steps.
StepHook = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class StripeSync:
    """What a sync needs besides the database: the key box and where Stripe is."""

    box: SecretBox
    # The clock the stored times come from (services never read one themselves).
    clock: Callable[[], datetime]
    api_base: str | None = None
    after_step: StepHook | None = None


async def _hook(stripe: StripeSync, step: str) -> None:
    if stripe.after_step is not None:
        await stripe.after_step(step)


async def _customer(
    factory: SessionFactory,
    gateway: StripeGateway,
    stripe: StripeSync,
    account_id: uuid.UUID,
    customer_id: str,
) -> str:
    """The customer's Stripe Customer id, created (once) when it has none."""
    async with factory() as session:
        customer = await session.scalar(
            select(Customer).where(
                col(Customer.account_id) == account_id, col(Customer.customer_id) == customer_id
            )
        )
    if customer is None:
        raise PaymentError(f"customer {customer_id!r} no longer exists", retryable=False)
    if customer.stripe_customer_id:
        return customer.stripe_customer_id
    created = await gateway.create_customer(
        name=customer.name,
        email=customer.email,
        metadata={
            "meterflow_customer_id": customer.customer_id,
            "meterflow_account_id": str(account_id),
        },
        idempotency_key=f"meterflow:customer:{customer.id}",
    )
    await _hook(stripe, "customer")
    async with unit_of_work(factory) as session:
        # Whoever stored one first wins (an operator may have set it meanwhile).
        await session.execute(
            update(Customer)
            .where(
                col(Customer.account_id) == account_id,
                col(Customer.id) == customer.id,
                col(Customer.stripe_customer_id).is_(None),
            )
            .values(stripe_customer_id=created.id)
        )
        stored = await session.scalar(
            select(col(Customer.stripe_customer_id)).where(
                col(Customer.account_id) == account_id, col(Customer.id) == customer.id
            )
        )
    return stored or created.id


@dataclass(frozen=True)
class _Sending:
    """What goes to Stripe as one invoice (a meterflow invoice, or a top-up), and how far an
    earlier try got."""

    key: str  # the idempotency keys' prefix
    customer_id: str
    currency: str
    description: str
    metadata: dict[str, str]
    items: list[Charge]
    # Charged to the card on file: `always` even with no card known (an automatic top-up: the
    # payment then fails and is recorded); else only when the customer has one and `wanted`.
    charge_wanted: bool
    charge_always: bool
    collection_method: CollectionMethod | None
    external_id: str | None


Store = Callable[..., Awaitable[None]]


def _store(
    factory: SessionFactory, stripe: StripeSync, model: Any, row_id: Any, account_id: uuid.UUID
) -> Store:
    """Writes a step's result on the row being sent, in a transaction of its own."""
    key = model.invoice_id if model is InvoicePayment else model.id

    async def store(**values: object) -> None:
        async with unit_of_work(factory) as session:
            await session.execute(
                update(model)
                .where(col(model.account_id) == account_id, key == row_id)
                .values(updated_at=stripe.clock(), **values)
            )

    return store


async def _send(
    factory: SessionFactory,
    stripe: StripeSync,
    gateway: StripeGateway,
    days_until_due: int,
    account_id: uuid.UUID,
    sending: _Sending,
    store: Store,
) -> tuple[CollectionMethod, StripeInvoice]:
    """Steps 1 to 4, each skipped when an earlier try stored its result."""
    customer = await _customer(factory, gateway, stripe, account_id, sending.customer_id)
    method = sending.collection_method
    if method is None:
        charge = sending.charge_always or (
            sending.charge_wanted and (await gateway.customer(customer)).default_payment_method
        )
        method = CollectionMethod.CHARGE_AUTOMATICALLY if charge else CollectionMethod.SEND_INVOICE
        # Stored before the invoice is created: a retry sends the very same parameters.
        await store(collection_method=method, external_customer_id=customer)
    external = sending.external_id
    if external is None:
        created = await gateway.create_invoice(
            customer=customer,
            currency=sending.currency,
            charge_automatically=method is CollectionMethod.CHARGE_AUTOMATICALLY,
            days_until_due=days_until_due,
            description=sending.description,
            metadata={**sending.metadata, "meterflow_account_id": str(account_id)},
            idempotency_key=f"{sending.key}:invoice",
        )
        await _hook(stripe, "invoice")
        external = created.id
        await store(external_id=external)
    for position, item in enumerate(sending.items):
        await gateway.add_item(
            customer=customer,
            invoice=external,
            amount_minor=item.amount_minor,
            currency=sending.currency,
            description=item.description,
            idempotency_key=f"{sending.key}:item:{position}",
        )
        await _hook(stripe, f"item:{position}")
    final = await gateway.finalize(external, idempotency_key=f"{sending.key}:finalize")
    await _hook(stripe, "finalize")
    await store(hosted_invoice_url=final.hosted_invoice_url, synced_at=stripe.clock())
    return method, final


async def sync_invoice(
    factory: SessionFactory, stripe: StripeSync, *, account_id: uuid.UUID, invoice_id: uuid.UUID
) -> str | None:
    """Send a finalized invoice to Stripe, or resume where a crash left it. Returns the
    customer whose invoice moved, or None when there was nothing to do. Raises PaymentError
    (`retryable` says whether to try again)."""
    async with factory() as session:
        payment = await session.scalar(
            select(InvoicePayment).where(
                col(InvoicePayment.account_id) == account_id,
                col(InvoicePayment.invoice_id) == invoice_id,
            )
        )
        invoice = await session.scalar(
            select(Invoice).where(
                col(Invoice.account_id) == account_id, col(Invoice.id) == invoice_id
            )
        )
        creds = await stripe_connections.credentials(session, account_id=account_id, box=stripe.box)
    if payment is None or invoice is None or payment.synced_at is not None:
        return None
    if payment.status is not PaymentStatus.PENDING:
        return None
    if creds is None:
        raise PaymentError("Stripe is not connected for this account", retryable=False)
    sending = _Sending(
        key=f"meterflow:invoice:{invoice_id}",
        customer_id=invoice.customer_id,
        currency=invoice.currency,
        description=f"Usage {invoice.period_start:%Y-%m-%d} to {invoice.period_end:%Y-%m-%d}",
        metadata={
            "meterflow_invoice_id": str(invoice_id),
            "meterflow_customer_id": invoice.customer_id,
        },
        items=charges(
            currency=invoice.currency,
            lines=invoice.lines,
            discounts=invoice.discounts,
            discount_total=invoice.discount,
            credits_applied=invoice.credits_applied,
            total=invoice.total,
        ),
        charge_wanted=creds.collection_method is CollectionMethod.CHARGE_AUTOMATICALLY,
        charge_always=False,
        collection_method=payment.collection_method,
        external_id=payment.external_id,
    )
    store = _store(factory, stripe, InvoicePayment, invoice_id, account_id)
    async with StripeGateway(creds.secret_key, api_base=stripe.api_base) as gateway:
        await _send(factory, stripe, gateway, creds.days_until_due, account_id, sending, store)
    await store(last_error=None)
    return invoice.customer_id


async def record_invoice_error(
    factory: SessionFactory,
    *,
    account_id: uuid.UUID,
    invoice_id: uuid.UUID,
    error: PaymentError,
    now: datetime,
) -> None:
    """A failed try: counted and kept; one Stripe will not accept (a card or request error) is
    final: the payment is FAILED, for an operator to look at."""
    async with unit_of_work(factory) as session:
        values: dict[str, object] = {
            "attempts": col(InvoicePayment.attempts) + 1,
            "last_error": error.message,
            "updated_at": now,
        }
        if not error.retryable:
            values["status"] = PaymentStatus.FAILED
        await session.execute(
            update(InvoicePayment)
            .where(
                col(InvoicePayment.account_id) == account_id,
                col(InvoicePayment.invoice_id) == invoice_id,
                col(InvoicePayment.status) == PaymentStatus.PENDING,
            )
            .values(**values)
        )


async def sync_top_up(
    factory: SessionFactory, stripe: StripeSync, *, account_id: uuid.UUID, top_up_id: uuid.UUID
) -> str | None:
    """Send a pending top-up to Stripe and, when it is charged automatically, pay it; grants
    the credits at once if Stripe answers paid (else its `invoice.paid` webhook will). Returns
    the customer whose wallet may have moved. Raises PaymentError; a card error marks the
    top-up FAILED (the back-off then applies)."""
    async with factory() as session:
        row = await top_ups.get(session, account_id=account_id, top_up_id=top_up_id)
        creds = await stripe_connections.credentials(session, account_id=account_id, box=stripe.box)
    if row is None or row.status is not TopUpStatus.PENDING or row.synced_at is not None:
        return None
    if creds is None:
        raise PaymentError("Stripe is not connected for this account", retryable=False)
    sending = _Sending(
        key=f"meterflow:top-up:{top_up_id}",
        customer_id=row.customer_id,
        currency=row.currency,
        description="Prepaid credits",
        metadata={"meterflow_top_up_id": str(top_up_id), "meterflow_customer_id": row.customer_id},
        items=[
            Charge(
                f"Prepaid credits: {row.amount} {row.currency}",
                minor_units(row.amount, row.currency),
            )
        ],
        # A one-off purchase without a card on file is paid on the invoice's hosted page.
        charge_wanted=True,
        charge_always=row.automatic,
        collection_method=row.collection_method,
        external_id=row.external_id,
    )
    store = _store(factory, stripe, TopUp, top_up_id, account_id)
    async with StripeGateway(creds.secret_key, api_base=stripe.api_base) as gateway:
        method, final = await _send(
            factory, stripe, gateway, creds.days_until_due, account_id, sending, store
        )
        if method is CollectionMethod.CHARGE_AUTOMATICALLY and final.status != "paid":
            try:
                final = await gateway.pay(final.id, idempotency_key=f"{sending.key}:pay")
            except PaymentError as exc:
                if exc.retryable:
                    raise
                async with unit_of_work(factory) as session:
                    await top_ups.mark_failed(
                        session,
                        account_id=account_id,
                        top_up_id=top_up_id,
                        error=exc.message,
                        now=stripe.clock(),
                    )
                return row.customer_id
    if final.status == "paid":
        async with unit_of_work(factory) as session:
            await top_ups.mark_paid(
                session,
                account_id=account_id,
                top_up_id=top_up_id,
                external_id=final.id,
                now=stripe.clock(),
            )
    return row.customer_id


async def record_top_up_error(
    factory: SessionFactory,
    *,
    account_id: uuid.UUID,
    top_up_id: uuid.UUID,
    error: PaymentError,
    now: datetime,
) -> None:
    async with unit_of_work(factory) as session:
        await session.execute(
            update(TopUp)
            .where(col(TopUp.account_id) == account_id, col(TopUp.id) == top_up_id)
            .values(attempts=col(TopUp.attempts) + 1, last_error=error.message, updated_at=now)
        )
        if not error.retryable:
            await top_ups.mark_failed(
                session, account_id=account_id, top_up_id=top_up_id, error=error.message, now=now
            )
