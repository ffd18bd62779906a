"""Prepaid top-ups: a purchase of credits paid through a Stripe invoice, granted once Stripe
says it is paid, exactly once. Started by hand (`createTopUp`) or by a wallet's automatic rule
when its balance falls below the threshold.

At most one top-up per wallet is PENDING (a partial unique index), so concurrent re-rates
cannot start two; a FAILED one holds the next automatic one back for `retry_after`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import ConflictError, NotFoundError, ValidationError
from meterflow.models import AutoTopUp, TopUp, TopUpStatus
from meterflow.pricing.money import checked_amount
from meterflow.services import (
    customers,
    invoice_rating,
    outbox,
    stripe_connections,
    wallets,
    webhook_events,
    webhook_payloads,
)
from meterflow.services.sql import any_text

DEFAULT_RETRY_AFTER = timedelta(hours=1)
MAX_AMOUNT = Decimal("1e9")


@dataclass(frozen=True)
class Started:
    top_up: TopUp
    created: bool


def _money(amount: Decimal, currency: str, field: str) -> Decimal:
    if not amount.is_finite() or amount <= 0:
        raise ValidationError(f"{field} must be positive", field=field)
    if amount > MAX_AMOUNT:
        raise ValidationError(f"{field} must be at most {MAX_AMOUNT:f}", field=field)
    return checked_amount(amount, currency, field=field)


def _currency(currency: str) -> str:
    code = currency.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValidationError(
            "currency must be an ISO 4217 code (top-ups are paid in money)", field="currency"
        )
    return code


async def _require_customer(session: AsyncSession, account_id: uuid.UUID, customer_id: str) -> None:
    if (
        await customers.get_customer(session, account_id=account_id, customer_id=customer_id)
        is None
    ):
        raise NotFoundError(f"no customer {customer_id!r} in this account")


async def set_auto(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    currency: str,
    threshold: Decimal,
    amount: Decimal,
    enabled: bool,
    now: datetime,
) -> AutoTopUp:
    """Set the wallet's automatic top-up rule (one per wallet; setting it again replaces it)."""
    code = _currency(currency)
    await _require_customer(session, account_id, customer_id)
    if not threshold.is_finite() or threshold < 0:
        raise ValidationError("threshold must be zero or more", field="threshold")
    if threshold > MAX_AMOUNT:
        raise ValidationError(f"threshold must be at most {MAX_AMOUNT:f}", field="threshold")
    threshold = checked_amount(threshold, code, field="threshold")
    amount = _money(amount, code, "amount")
    values = {"threshold": threshold, "amount": amount, "enabled": enabled, "updated_at": now}
    statement = insert(AutoTopUp).values(
        account_id=account_id, customer_id=customer_id, currency=code, **values
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["account_id", "customer_id", "currency"], set_=values
        )
    )
    rule = await auto_rule(session, account_id=account_id, customer_id=customer_id, currency=code)
    assert rule is not None
    return rule


async def auto_rule(
    session: AsyncSession, *, account_id: uuid.UUID, customer_id: str, currency: str
) -> AutoTopUp | None:
    return await session.scalar(
        select(AutoTopUp)
        .where(
            col(AutoTopUp.account_id) == account_id,
            col(AutoTopUp.customer_id) == customer_id,
            col(AutoTopUp.currency) == currency.upper(),
        )
        .execution_options(populate_existing=True)
    )


async def auto_rules(
    session: AsyncSession, *, account_id: uuid.UUID, wallets: Sequence[tuple[str, str]]
) -> dict[tuple[str, str], AutoTopUp]:
    """The automatic rules of many wallets (customer, currency) in one statement."""
    if not wallets:
        return {}
    rows = await session.scalars(
        select(AutoTopUp).where(
            col(AutoTopUp.account_id) == account_id,
            col(AutoTopUp.customer_id) == any_text([c for c, _ in wallets]),
        )
    )
    wanted = {(c, cur.upper()) for c, cur in wallets}
    found = {(r.customer_id, r.currency): r for r in rows}
    return {key: rule for key, rule in found.items() if key in wanted}


async def _start(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    currency: str,
    amount: Decimal,
    automatic: bool,
    now: datetime,
) -> TopUp | None:
    """A new PENDING top-up and its sync (outbox work), unless one is pending already."""
    new_id = uuid.uuid4()
    created = await session.scalar(
        insert(TopUp)
        .values(
            account_id=account_id,
            id=new_id,
            customer_id=customer_id,
            currency=currency,
            amount=amount,
            automatic=automatic,
            status=TopUpStatus.PENDING,
            attempts=0,
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(
            index_elements=["account_id", "customer_id", "currency"],
            index_where=text("status = 'PENDING'"),
        )
        .returning(col(TopUp.id))
    )
    if created is None:
        return None
    await outbox.add(
        session, account_id=account_id, kind=outbox.SYNC_TOP_UP, items={str(new_id): {}}
    )
    return await get(session, account_id=account_id, top_up_id=new_id)


async def create(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    amount: Decimal,
    currency: str,
    now: datetime,
) -> TopUp:
    """A one-off purchase of credits (createTopUp)."""
    code = _currency(currency)
    amount = _money(amount, code, "amount")
    await _require_customer(session, account_id, customer_id)
    if await stripe_connections.get(session, account_id=account_id) is None:
        raise ValidationError(
            "this account has not connected Stripe: connectStripe first", field="customerId"
        )
    row = await _start(
        session,
        account_id=account_id,
        customer_id=customer_id,
        currency=code,
        amount=amount,
        automatic=False,
        now=now,
    )
    if row is None:
        raise ConflictError(
            f"customer {customer_id!r} already has a {code} top-up waiting for payment"
        )
    return row


async def start_due(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_ids: Sequence[str],
    now: datetime,
    retry_after: timedelta = DEFAULT_RETRY_AFTER,
) -> list[TopUp]:
    """Automatic top-ups of these customers' wallets whose balance is below their threshold.
    Costs one indexed query when none of them has a rule (the common case)."""
    if not customer_ids:
        return []
    rules = list(
        await session.scalars(
            select(AutoTopUp).where(
                col(AutoTopUp.account_id) == account_id,
                col(AutoTopUp.customer_id) == any_text(list(customer_ids)),
                col(AutoTopUp.enabled).is_(True),
            )
        )
    )
    if not rules or await stripe_connections.get(session, account_id=account_id) is None:
        return []
    started = []
    for rule in rules:
        left = await wallets.balance(
            session,
            account_id=account_id,
            customer_id=rule.customer_id,
            currency=rule.currency,
            now=now,
        )
        if left >= rule.threshold:
            continue
        last_failure = await session.scalar(
            select(func.max(col(TopUp.failed_at))).where(
                col(TopUp.account_id) == account_id,
                col(TopUp.customer_id) == rule.customer_id,
                col(TopUp.currency) == rule.currency,
                col(TopUp.status) == TopUpStatus.FAILED,
            )
        )
        if last_failure is not None and last_failure + retry_after > now:
            continue
        row = await _start(
            session,
            account_id=account_id,
            customer_id=rule.customer_id,
            currency=rule.currency,
            amount=rule.amount,
            automatic=True,
            now=now,
        )
        if row is not None:
            started.append(row)
    return started


async def get(
    session: AsyncSession, *, account_id: uuid.UUID, top_up_id: uuid.UUID
) -> TopUp | None:
    return await session.scalar(
        select(TopUp)
        .where(col(TopUp.account_id) == account_id, col(TopUp.id) == top_up_id)
        .execution_options(populate_existing=True)
    )


async def list_for(
    session: AsyncSession, *, account_id: uuid.UUID, customer_id: str, limit: int
) -> list[TopUp]:
    return list(
        await session.scalars(
            select(TopUp)
            .where(col(TopUp.account_id) == account_id, col(TopUp.customer_id) == customer_id)
            .order_by(col(TopUp.created_at).desc(), col(TopUp.id))
            .limit(limit)
        )
    )


async def _locked(
    session: AsyncSession, account_id: uuid.UUID, top_up_id: uuid.UUID
) -> TopUp | None:
    return await session.scalar(
        select(TopUp)
        .where(col(TopUp.account_id) == account_id, col(TopUp.id) == top_up_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def mark_paid(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    top_up_id: uuid.UUID,
    external_id: str | None,
    now: datetime,
) -> TopUp | None:
    """Stripe says it is paid: grant the credits as purchased credits, exactly once (the row is
    locked and moves to PAID with its grant). Returns the top-up if this call granted it."""
    row = await _locked(session, account_id, top_up_id)
    if row is None or row.status in (TopUpStatus.PAID, TopUpStatus.VOID):
        return None
    reference = external_id or row.external_id
    grant = await wallets.grant(
        session,
        account_id=account_id,
        customer_id=row.customer_id,
        amount=row.amount,
        currency=row.currency,
        priority=100,
        expires_at=None,
        reason=f"Top-up {reference} (Stripe)" if reference else "Top-up (Stripe)",
        purchased=True,
        now=now,
    )
    row.status = TopUpStatus.PAID
    row.grant_id = grant.id
    row.paid_at = row.updated_at = now
    row.external_id = reference
    row.last_error = None
    # The new credits apply to the running invoice now, as grantCredits does.
    await invoice_rating.rerate_customer(
        session, account_id=account_id, customer_id=row.customer_id, now=now
    )
    await session.flush()
    paid = row
    left = await wallets.balance(
        session, account_id=account_id, customer_id=row.customer_id, currency=row.currency, now=now
    )
    await webhook_events.notify(
        session,
        account_id=account_id,
        event_type="wallet.topped_up",
        build=lambda: [
            (
                {
                    "topUp": webhook_payloads.top_up(paid),
                    "wallet": webhook_payloads.wallet(paid.customer_id, paid.currency, left),
                },
                paid.customer_id,
            )
        ],
        now=now,
    )
    return row


async def mark_failed(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    top_up_id: uuid.UUID,
    error: str,
    now: datetime,
    attempts: int | None = None,
) -> TopUp | None:
    """The payment failed: recorded; the wallet may start another only after the back-off."""
    row = await _locked(session, account_id, top_up_id)
    if row is None or row.status is not TopUpStatus.PENDING:
        return None
    row.status = TopUpStatus.FAILED
    row.failed_at = row.updated_at = now
    row.last_error = error[:500]
    if attempts is not None:
        row.attempts = max(row.attempts, attempts)
    await session.flush()
    return row


async def mark_void(
    session: AsyncSession, *, account_id: uuid.UUID, top_up_id: uuid.UUID, now: datetime
) -> TopUp | None:
    row = await _locked(session, account_id, top_up_id)
    if row is None or row.status not in (TopUpStatus.PENDING, TopUpStatus.FAILED):
        return None
    row.status = TopUpStatus.VOID
    row.updated_at = now
    await session.flush()
    return row
