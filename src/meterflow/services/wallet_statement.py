"""A wallet's statement: its ledger lines, oldest first, each with the running balance after it.

Written by services/wallets.py (grants, consumption per invoice and grant, expiries); read here.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from meterflow.models import CreditGrant, Invoice, LedgerKind, WalletLedgerEntry
from meterflow.services.pagination import Page
from meterflow.services.sql import any_text


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
    pages = await ledgers(
        session,
        account_id=account_id,
        wallets=[(customer_id, currency)],
        limit=limit,
        after=after,
    )
    return pages[(customer_id, currency)]


async def ledgers(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    wallets: Sequence[tuple[str, str]],
    limit: int,
    after: int | None,
) -> dict[tuple[str, str], Page[StatementLine]]:
    """The same page (`limit` lines after `after`) of many wallets' statements, in one
    statement: running balances per wallet, then each wallet's first lines by position."""
    pages: dict[tuple[str, str], Page[StatementLine]] = {w: Page([], False) for w in wallets}
    if not wallets:
        return pages
    wallet = (col(WalletLedgerEntry.customer_id), col(WalletLedgerEntry.currency))
    running = (
        select(
            WalletLedgerEntry,
            func.sum(col(WalletLedgerEntry.amount))
            .over(partition_by=wallet, order_by=col(WalletLedgerEntry.seq))
            .label("balance_after"),
        )
        .where(
            col(WalletLedgerEntry.account_id) == account_id,
            col(WalletLedgerEntry.customer_id) == any_text([c for c, _ in wallets]),
        )
        .subquery()
    )
    numbered = (
        select(
            running,
            col(Invoice.period_start).label("period_start"),
            col(Invoice.period_end).label("period_end"),
            col(CreditGrant.reason).label("reason"),
            func.row_number()
            .over(
                partition_by=(running.c.customer_id, running.c.currency),
                order_by=running.c.seq,
            )
            .label("position"),
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
        numbered = numbered.where(running.c.seq > after)
    paged = numbered.subquery()
    line = aliased(WalletLedgerEntry, paged)
    rows = await session.execute(
        select(
            line, paged.c.balance_after, paged.c.period_start, paged.c.period_end, paged.c.reason
        )
        .where(paged.c.position <= limit + 1)
        .order_by(paged.c.customer_id, paged.c.currency, paged.c.seq)
    )
    found: dict[tuple[str, str], list[StatementLine]] = {}
    for entry, balance_after, start, end, reason in rows:
        found.setdefault((entry.customer_id, entry.currency), []).append(
            StatementLine(entry, Decimal(balance_after), start, end, reason)
        )
    for key in pages:
        lines = found.get(key, [])
        pages[key] = Page(lines[:limit], len(lines) > limit)
    return pages
