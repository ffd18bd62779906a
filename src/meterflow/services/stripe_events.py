"""What a verified Stripe event changes. Each event is handled once, by its id: the id is
recorded in the transaction of its effects, so a redelivery (Stripe retries until it gets a
2xx) finds it and changes nothing. Types meterflow does not use are recorded and ignored.

Objects are found by the metadata meterflow put on them: `meterflow_invoice_id` on an invoice's
Stripe invoice, `meterflow_top_up_id` on a top-up's.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import ValidationError
from meterflow.models import PaymentStatus, StripeEvent
from meterflow.services import invoice_payments, top_ups
from meterflow.services.validation import storable

OUTCOMES = {
    "invoice.paid": PaymentStatus.PAID,
    "invoice.payment_failed": PaymentStatus.FAILED,
    "invoice.marked_uncollectible": PaymentStatus.UNCOLLECTIBLE,
    "invoice.voided": PaymentStatus.VOID,
}


@dataclass
class Handled:
    """What an event did: `replay` when it had been handled before; the customers whose
    invoices or wallets changed (their subscribers are told after commit)."""

    replay: bool = False
    customers: set[str] = field(default_factory=set)


def _text(value: Any, what: str, max_length: int = 255) -> str:
    if not isinstance(value, str) or not value or len(value) > max_length or not storable(value):
        raise ValidationError(f"the event's {what} is missing or malformed", field=what)
    return value


def _uuid(value: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _error_of(obj: dict[str, Any]) -> str:
    attempts = obj.get("attempt_count")
    detail = obj.get("last_payment_error")
    message = detail.get("message") if isinstance(detail, dict) else None
    text = f"payment attempt {attempts} failed" if attempts else "payment failed"
    return f"{text}: {message}" if isinstance(message, str) and storable(message) else text


async def handle(
    session: AsyncSession, *, account_id: uuid.UUID, event: dict[str, Any], now: datetime
) -> Handled:
    event_id = _text(event.get("id"), "id")
    kind = _text(event.get("type"), "type", 100)
    recorded = await session.scalar(
        insert(StripeEvent)
        .values(account_id=account_id, event_id=event_id, type=kind, received_at=now)
        .on_conflict_do_nothing(index_elements=["account_id", "event_id"])
        .returning(col(StripeEvent.event_id))
    )
    if recorded is None:
        return Handled(replay=True)
    outcome = OUTCOMES.get(kind)
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if outcome is None or not isinstance(obj, dict):
        return Handled()
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    assert isinstance(metadata, dict)
    owner = metadata.get("meterflow_account_id")
    if owner is not None and owner != str(account_id):
        return Handled()  # another meterflow account's object on a shared Stripe account
    external = obj.get("id") if isinstance(obj.get("id"), str) else None
    attempts = obj.get("attempt_count") if isinstance(obj.get("attempt_count"), int) else None
    handled = Handled()
    invoice_id = _uuid(metadata.get("meterflow_invoice_id"))
    if invoice_id is not None:
        invoice = await invoice_payments.settle(
            session,
            account_id=account_id,
            invoice_id=invoice_id,
            status=outcome,
            now=now,
            external_id=external,
            attempts=attempts,
            error=_error_of(obj) if outcome is PaymentStatus.FAILED else None,
        )
        if invoice is not None:
            handled.customers.add(invoice.customer_id)
    top_up_id = _uuid(metadata.get("meterflow_top_up_id"))
    if top_up_id is not None:
        if outcome is PaymentStatus.PAID:
            row = await top_ups.mark_paid(
                session, account_id=account_id, top_up_id=top_up_id, external_id=external, now=now
            )
        elif outcome is PaymentStatus.VOID:
            row = await top_ups.mark_void(
                session, account_id=account_id, top_up_id=top_up_id, now=now
            )
        else:
            row = await top_ups.mark_failed(
                session,
                account_id=account_id,
                top_up_id=top_up_id,
                error=_error_of(obj),
                now=now,
                attempts=attempts,
            )
        if row is not None:
            handled.customers.add(row.customer_id)
    return handled
