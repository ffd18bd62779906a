"""Prepaid credits: grants, drawn down by open invoices in real time, with a ledger.

A grant's `remaining` is what no invoice has drawn yet. An invoice holds allocations against
grants; re-rating moves its allocation up or down. Grants are drawn in priority order (lowest
first), then soonest expiry, then oldest.

The ledger reads like a statement: one GRANT line per grant, one CONSUMPTION line per
(invoice, grant) that moves in place as the invoice is re-rated, one EXPIRY line per expired
grant. The sum of a wallet's lines is its balance; each line's running balance is computed when
read, by services/wallet_statement.py (a line that moves would make a stored one stale). A
consumption line that falls to zero (the invoice gave all of that grant back: voided, shrunk,
moved to another plan) is removed, so the statement shows only what moves the balance.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import NotFoundError, ValidationError
from meterflow.models import CreditAllocation, CreditGrant, LedgerKind, WalletLedgerEntry
from meterflow.pricing.money import (
    CUSTOM_UNIT_PLACES,
    checked_amount,
    checked_units,
    quantum,
)
from meterflow.services import customers, webhook_events, webhook_payloads
from meterflow.services.validation import utc_time

ZERO = Decimal(0)


@dataclass(frozen=True)
class WalletState:
    customer_id: str
    currency: str
    balance: Decimal


def _active(now: datetime) -> list[Any]:
    return [
        col(CreditGrant.expired_at).is_(None),
        (col(CreditGrant.expires_at).is_(None)) | (col(CreditGrant.expires_at) > now),
    ]


async def balance(
    session: AsyncSession, *, account_id: uuid.UUID, customer_id: str, currency: str, now: datetime
) -> Decimal:
    total: Any = await session.scalar(
        select(func.coalesce(func.sum(col(CreditGrant.remaining)), 0)).where(
            col(CreditGrant.account_id) == account_id,
            col(CreditGrant.customer_id) == customer_id,
            col(CreditGrant.currency) == currency,
            *_active(now),
        )
    )
    return Decimal(total or 0)


async def _record(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    currency: str,
    kind: LedgerKind,
    amount: Decimal,
    now: datetime,
    grant_id: uuid.UUID | None = None,
    invoice_id: uuid.UUID | None = None,
) -> None:
    session.add(
        WalletLedgerEntry(
            account_id=account_id,
            customer_id=customer_id,
            currency=currency,
            kind=kind,
            amount=amount,
            grant_id=grant_id,
            invoice_id=invoice_id,
            created_at=now,
            updated_at=now,
        )
    )


async def _consume(
    session: AsyncSession,
    *,
    invoice_id: uuid.UUID,
    grant: CreditGrant,
    units: Decimal,
    now: datetime,
) -> None:
    """Move the invoice's consumption line of `grant` by `units` (negative draws down).

    An upsert on (account, invoice, grant): two transactions that both find no line can never
    make two (the second one updates the first one's line once it has committed).
    """
    stmt = insert(WalletLedgerEntry).values(
        account_id=grant.account_id,
        customer_id=grant.customer_id,
        currency=grant.currency,
        kind=LedgerKind.CONSUMPTION,
        amount=units,
        grant_id=grant.id,
        invoice_id=invoice_id,
        created_at=now,
        updated_at=now,
    )
    table = WalletLedgerEntry.__table__  # type: ignore[attr-defined]
    total = await session.scalar(
        stmt.on_conflict_do_update(
            constraint="uq_wallet_ledger_invoice_grant",
            set_={"amount": table.c.amount + stmt.excluded.amount, "updated_at": now},
        ).returning(table.c.amount)
    )
    if total == 0:
        await session.execute(
            delete(WalletLedgerEntry).where(
                col(WalletLedgerEntry.account_id) == grant.account_id,
                col(WalletLedgerEntry.invoice_id) == invoice_id,
                col(WalletLedgerEntry.grant_id) == grant.id,
            )
        )


async def _expire_more(
    session: AsyncSession, *, grant: CreditGrant, units: Decimal, now: datetime
) -> None:
    """Credit given back to a grant that has already expired expires with it."""
    await session.execute(
        update(WalletLedgerEntry)
        .where(
            col(WalletLedgerEntry.account_id) == grant.account_id,
            col(WalletLedgerEntry.grant_id) == grant.id,
            col(WalletLedgerEntry.kind) == LedgerKind.EXPIRY,
        )
        .values(amount=col(WalletLedgerEntry.amount) - units, updated_at=now)
    )


async def _held_units(
    session: AsyncSession, account_id: uuid.UUID, invoice_id: uuid.UUID
) -> dict[uuid.UUID, Decimal]:
    """Units of each grant the invoice holds, from its consumption lines (positive)."""
    rows = await session.execute(
        select(col(WalletLedgerEntry.grant_id), col(WalletLedgerEntry.amount)).where(
            col(WalletLedgerEntry.account_id) == account_id,
            col(WalletLedgerEntry.invoice_id) == invoice_id,
            col(WalletLedgerEntry.kind) == LedgerKind.CONSUMPTION,
        )
    )
    return {grant_id: -Decimal(amount) for grant_id, amount in rows if grant_id is not None}


async def grant(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    amount: Decimal,
    currency: str,
    priority: int,
    expires_at: datetime | None,
    reason: str | None,
    purchased: bool,
    now: datetime,
    money_currency: str | None = None,
    ratio: Decimal | None = None,
) -> CreditGrant:
    if not amount.is_finite() or amount <= 0:
        raise ValidationError("amount must be positive", field="amount")
    unit = currency.upper()
    money = (money_currency or unit).upper()
    if unit != money and ratio is None:
        raise ValidationError(
            f"credits in {unit} need a ratio: what one {unit} is worth in {money}",
            field="ratio",
        )
    if ratio is not None and (not ratio.is_finite() or ratio <= 0):
        raise ValidationError("ratio must be positive", field="ratio")
    if unit == money:  # money: whole minor units (9.995 USD is not an amount)
        amount = checked_amount(amount, unit, field="amount")
    else:  # a custom currency counts units to the precision its conversion keeps
        amount = checked_units(
            amount, CUSTOM_UNIT_PLACES, what=f"credits in {unit}", field="amount"
        )
    if expires_at is not None:
        expires_at = utc_time(expires_at, field="expiresAt")
    if expires_at is not None and expires_at <= now:
        raise ValidationError("expiresAt is in the past", field="expiresAt")
    if (
        await customers.get_customer(session, account_id=account_id, customer_id=customer_id)
        is None
    ):
        raise NotFoundError(f"no customer {customer_id!r} in this account")
    row = CreditGrant(
        account_id=account_id,
        customer_id=customer_id,
        currency=unit,
        amount=amount,
        remaining=amount,
        ratio=ratio if ratio is not None else Decimal(1),
        money_currency=money if unit != money else unit[:3],
        priority=priority,
        purchased=purchased,
        reason=reason,
        expires_at=expires_at,
        created_at=now,
    )
    session.add(row)
    await _record(
        session,
        account_id=account_id,
        customer_id=customer_id,
        currency=row.currency,
        kind=LedgerKind.GRANT,
        amount=amount,
        now=now,
        grant_id=row.id,
    )
    # Sessions do not autoflush: a draw later in this transaction (grantCredits re-rates the
    # open invoice at once) must see the new grant.
    await session.flush()
    await webhook_events.notify(
        session,
        account_id=account_id,
        event_type="credits.granted",
        build=lambda: [({"grant": webhook_payloads.grant(row)}, customer_id)],
        now=now,
    )
    return row


UNIT_PLACES = Decimal("1e-12")


def _units(money: Decimal, ratio: Decimal) -> Decimal:
    """How many of a grant's units make `money` (exact for plain credits, ratio 1)."""
    return money if ratio == 1 else (money / ratio).quantize(UNIT_PLACES, ROUND_HALF_UP)


async def draw(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    currency: str,
    invoice_id: uuid.UUID,
    due: Decimal,
    now: datetime,
) -> Decimal:
    """Make the invoice's credits cover as much of `due` as the wallet allows. Returns them.

    Works in the invoice's money: allocations hold money; a grant in a custom currency gives
    up money / ratio of its units. Each grant it moved has its consumption line moved.
    """
    allocations = list(
        await session.scalars(
            select(CreditAllocation)
            .where(
                col(CreditAllocation.account_id) == account_id,
                col(CreditAllocation.invoice_id) == invoice_id,
            )
            .with_for_update()
        )
    )
    held = sum((a.amount for a in allocations), ZERO)
    grants = list(
        await session.scalars(
            select(CreditGrant)
            .where(
                col(CreditGrant.account_id) == account_id,
                col(CreditGrant.customer_id) == customer_id,
                col(CreditGrant.money_currency) == currency,
            )
            .order_by(
                col(CreditGrant.priority),
                col(CreditGrant.expires_at).asc().nulls_last(),
                col(CreditGrant.created_at),
                col(CreditGrant.id),
            )
            .with_for_update()
        )
    )
    if not grants and not allocations:
        return ZERO
    live = [
        g for g in grants if g.expired_at is None and (g.expires_at is None or g.expires_at > now)
    ]
    step = quantum(currency)
    available = sum((_money_of(g, step) for g in live), ZERO)
    target = max(ZERO, min(due, held + available))
    delta = target - held
    if delta == 0:
        return held
    by_grant = {a.grant_id: a for a in allocations}
    if delta > 0:
        need = delta
        for g in live:
            take = min(_money_of(g, step), need)
            if take <= 0:
                continue
            units = min(g.remaining, _units(take, g.ratio))
            g.remaining -= units
            await _consume(session, invoice_id=invoice_id, grant=g, units=-units, now=now)
            need -= take
            if g.id in by_grant:
                by_grant[g.id].amount += take
            else:
                allocation = CreditAllocation(
                    account_id=account_id, invoice_id=invoice_id, grant_id=g.id, amount=take
                )
                session.add(allocation)
                by_grant[g.id] = allocation
            if need == 0:
                break
    else:
        give_back = -delta
        held_units = await _held_units(session, account_id, invoice_id)
        # Return credit to the grants drawn last first (reverse of the drawing order).
        for g in reversed(grants):
            held_here = by_grant.get(g.id)
            if held_here is None or held_here.amount <= 0:
                continue
            back = min(held_here.amount, give_back)
            held_here.amount -= back
            # Giving all of it back returns exactly the units drawn, whatever the rounding of
            # each step was: the grant is whole again and the invoice's line falls to zero.
            units = _units(back, g.ratio)
            if g.id in held_units:
                units = held_units[g.id] if held_here.amount == 0 else min(units, held_units[g.id])
            if g.expired_at is None:
                g.remaining += units
            else:
                await _expire_more(session, grant=g, units=units, now=now)
            await _consume(session, invoice_id=invoice_id, grant=g, units=units, now=now)
            give_back -= back
            if held_here.amount == 0:
                await session.delete(held_here)
            if give_back == 0:
                break
    return target


def _money_of(grant: CreditGrant, step: Decimal) -> Decimal:
    """What a grant's remaining units are worth, in whole minor units of the money currency."""
    worth = grant.remaining * grant.ratio
    return worth if grant.ratio == 1 else worth.quantize(step, ROUND_DOWN)


async def expire(session: AsyncSession, *, account_id: uuid.UUID, now: datetime) -> int:
    """Expire one account's grants whose time has come: what is left of them leaves the balance."""
    due = list(
        await session.scalars(
            select(CreditGrant)
            .where(
                col(CreditGrant.account_id) == account_id,
                col(CreditGrant.expired_at).is_(None),
                col(CreditGrant.expires_at) <= now,
            )
            .with_for_update(skip_locked=True)
        )
    )
    for g in due:
        left = g.remaining
        g.remaining = ZERO
        g.expired_at = now
        await _record(
            session,
            account_id=g.account_id,
            customer_id=g.customer_id,
            currency=g.currency,
            kind=LedgerKind.EXPIRY,
            amount=-left,
            now=now,
            grant_id=g.id,
        )
    return len(due)
