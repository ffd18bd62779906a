"""A wallet's statement: its ledger lines, oldest first, each with the running balance after it.

Written by services/wallets.py (grants, consumption per invoice and grant, expiries); read here.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from meterflow.models import CreditGrant, Invoice, LedgerKind, WalletLedgerEntry
from meterflow.services.pagination import Page


@dataclass(frozen=True)
class StatementLine:
    """A ledger line as the statement shows it: with the balance after it, and for consumption
    the period of the invoice that holds it."""

    entry: WalletLedgerEntry
    balance_after: Decimal
    period_start: datetime | None
    period_end: datetime | None
    # GRANT lines: the grant's reason (a top-up's names its Stripe invoice).
    reason: str | None = None


async def ledger(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    currency: str,
    limit: int,
    after: int | None,
) -> Page[StatementLine]:
    """The wallet's statement, oldest line first. Each line's balance is the running sum up to it
    over the whole wallet (then paged), so the last line's balance is the wallet's."""
    running = (
        select(
            WalletLedgerEntry,
            func.sum(col(WalletLedgerEntry.amount))
            .over(order_by=col(WalletLedgerEntry.seq))
            .label("balance_after"),
        )
        .where(
            col(WalletLedgerEntry.account_id) == account_id,
            col(WalletLedgerEntry.customer_id) == customer_id,
            col(WalletLedgerEntry.currency) == currency,
        )
        .subquery()
    )
    line = aliased(WalletLedgerEntry, running)
    query = (
        select(
            line,
            running.c.balance_after,
            col(Invoice.period_start),
            col(Invoice.period_end),
            col(CreditGrant.reason),
        )
        .outerjoin(
            Invoice,
            (col(Invoice.account_id) == running.c.account_id)
            & (col(Invoice.id) == running.c.invoice_id),
        )
        .outerjoin(
            CreditGrant,
            (col(CreditGrant.account_id) == running.c.account_id)
            & (col(CreditGrant.id) == running.c.grant_id)
            & (running.c.kind == LedgerKind.GRANT),
        )
    )
    if after is not None:
        query = query.where(running.c.seq > after)
    rows = list(await session.execute(query.order_by(running.c.seq).limit(limit + 1)))
    lines = [
        StatementLine(entry, Decimal(balance_after), start, end, reason)
        for entry, balance_after, start, end, reason in rows[:limit]
    ]
    return Page(lines, len(rows) > limit)
