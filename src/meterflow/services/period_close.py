"""The period close, one account at a time, in short transactions, behind the watermark gate.

Unlike the other services this module opens its own transactions (from a session factory):
keeping each one short is its purpose. A close held in one transaction across all tenants held
every tenant's rollup horizon for its whole length, and one exception rolled back every account.

The gate: an invoice is rated for finalization only once the account's rollup watermark has
passed every transaction that committed before the close began. An event committed a moment
before the close, not yet rolled up, would otherwise land on no invoice, and not even be late.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from meterflow.db import unit_of_work
from meterflow.models import Account
from meterflow.services import invoice_lifecycle, rollup_work, rollups, wallets
from meterflow.services.invoice_lifecycle import CloseReport

log = logging.getLogger("meterflow.services.period_close")

SessionFactory = async_sessionmaker[AsyncSession]
# Told which account a catch-up rolled up, so the work its steps recorded in the outbox (their
# re-rates and alert evaluations) can start at once rather than at the next sweep.
AfterCatchUp = Callable[[uuid.UUID], Awaitable[None]]

# How long the gate waits for in-flight transactions before leaving the account for next round.
DEFAULT_WAIT_SECONDS = 10.0
# Invoices per transaction: about a second of work each on a busy machine (see bench/close.py).
DEFAULT_BATCH = 500
POLL_SECONDS = 0.05


@dataclass
class CatchUp:
    caught_up: bool
    # Customers whose usage the catch-up rolled up.
    touched: set[str] = field(default_factory=set)


async def catch_up(
    session_factory: SessionFactory,
    *,
    account_id: uuid.UUID,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
) -> CatchUp:
    """Roll the account up until its watermark passes every transaction that had committed when
    this was called. Each step is its own transaction (advisory-locked, so it is safe beside the
    rollup job). A transaction still in flight holds the watermark back: wait for it, up to
    `wait_seconds`; then give up (caught_up False) rather than rate from a stale index."""
    async with session_factory() as session:
        # Every transaction that committed before now has an xid below this.
        horizon = int(await session.scalar(text("SELECT pg_snapshot_xmax(pg_current_snapshot())")))
    result = CatchUp(caught_up=False)
    deadline = time.monotonic() + wait_seconds
    while True:
        async with unit_of_work(session_factory) as session:
            step = await rollup_work.rollup_step(session, account_id=account_id)
            mark = await rollups.least_watermark(session, account_id)
        result.touched |= {customer for _, customer in step.touched}
        if mark is None or mark >= horizon:  # (None: no meter, so no events)
            result.caught_up = True
            return result
        if step.more:
            continue
        if time.monotonic() >= deadline:
            return result
        await asyncio.sleep(POLL_SECONDS)


async def close_account(
    session_factory: SessionFactory,
    *,
    account_id: uuid.UUID,
    now: datetime,
    batch: int = DEFAULT_BATCH,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    after_catch_up: AfterCatchUp | None = None,
) -> CloseReport:
    """Expire the account's credits, move its due invoices on, open its current periods.
    Idempotent: a second run at the same `now` changes nothing."""
    report = CloseReport()
    async with unit_of_work(session_factory) as session:
        report.expired_grants = await wallets.expire(session, account_id=account_id, now=now)
    async with session_factory() as session:
        due = await invoice_lifecycle.has_due_invoices(session, account_id=account_id, now=now)
    if due:
        caught = await catch_up(session_factory, account_id=account_id, wait_seconds=wait_seconds)
        if caught.touched and after_catch_up is not None:
            try:
                await after_catch_up(account_id)
            except Exception:  # the work is in the outbox, committed with the usage: swept later
                log.exception("close: account %s: follow-up of the catch-up failed", account_id)
        if not caught.caught_up:
            log.warning(
                "close: account %s: rollups did not catch up within %.0f s; "
                "its invoices wait for the next round",
                account_id,
                wait_seconds,
            )
            report.not_caught_up.append(account_id)
        else:
            more = True
            while more:
                async with unit_of_work(session_factory) as session:
                    step, more = await invoice_lifecycle.close_due(
                        session, account_id=account_id, now=now, batch=batch
                    )
                report.add(step)
    while True:
        async with unit_of_work(session_factory) as session:
            opened = await invoice_lifecycle.open_current_periods(
                session, account_id=account_id, now=now, limit=batch
            )
        report.opened += opened
        if opened < min(batch, invoice_lifecycle.OPEN_AT_MOST):
            if report.finalized or report.to_grace or report.opened:
                report.changed.append(account_id)
            return report


async def close_all(
    session_factory: SessionFactory,
    *,
    clock: Callable[[], datetime],
    batch: int = DEFAULT_BATCH,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    after_catch_up: AfterCatchUp | None = None,
) -> CloseReport:
    """close_account for every account. One account's failure is logged and counted; the
    others still close. Each account closes at its own `clock()` reading, taken as its close
    begins: a close of many accounts takes a while, and an account's `finalizedAt` (what
    decides which events are late) should be when its usage was caught up, not when the
    first account's was."""
    async with session_factory() as session:
        accounts = list(await session.scalars(select(col(Account.id)).order_by(col(Account.id))))
    report = CloseReport()
    for account_id in accounts:
        try:
            report.add(
                await close_account(
                    session_factory,
                    account_id=account_id,
                    now=clock(),
                    batch=batch,
                    wait_seconds=wait_seconds,
                    after_catch_up=after_catch_up,
                )
            )
        except Exception:
            log.exception("close: account %s failed; the other accounts carry on", account_id)
            report.failed.append(account_id)
    return report
