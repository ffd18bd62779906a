"""The wallet ledger reads like a statement: one consumption line per (invoice, grant), moving in
place as the invoice is re-rated; grants and expiries stay; the balance is exact."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from meterflow.db import SessionFactory, unit_of_work
from meterflow.models import Invoice, LedgerKind, PeriodInterval, WalletLedgerEntry
from meterflow.services import (
    assignments,
    customers,
    ingestion,
    invoice_rating,
    plans,
    rollups,
    wallet_statement,
    wallets,
)
from meterflow.services.periods import floor_interval
from tests.billing_setup import per_unit_account

D = Decimal
CENT = D("0.01")
PRICE = D("0.013")


@dataclass
class Setup:
    account_id: uuid.UUID
    customer_id: str


async def _setup(
    session_factory: SessionFactory, now: datetime, *, fee: Decimal | None = None
) -> Setup:
    async with unit_of_work(session_factory) as session:
        account_id, _ = await per_unit_account(
            session, name="statement", unit_price=str(PRICE), is_default=True, fee=fee, now=now
        )
        # The default plan: the customer joins it as it is created.
        await customers.create_customer(session, account_id=account_id, customer_id="c", now=now)
    return Setup(account_id, "c")


async def _grant(
    session_factory: SessionFactory,
    s: Setup,
    amount: str,
    now: datetime,
    *,
    priority: int = 100,
    expires_at: datetime | None = None,
) -> uuid.UUID:
    async with unit_of_work(session_factory) as session:
        row = await wallets.grant(
            session,
            account_id=s.account_id,
            customer_id=s.customer_id,
            amount=D(amount),
            currency="USD",
            priority=priority,
            expires_at=expires_at,
            reason=None,
            purchased=True,
            now=now,
        )
        return row.id


async def _use(session_factory: SessionFactory, s: Setup, value: int, now: datetime) -> None:
    """One event, rolled up, and the customer re-rated at `now` (what the worker does)."""
    data = {
        "meterApiName": "calls",
        "customerId": s.customer_id,
        "meterValue": value,
        "uniqueId": uuid.uuid4().hex,
        "meterTimeInMillis": int((now - timedelta(seconds=1)).timestamp() * 1000),
    }
    async with unit_of_work(session_factory) as session:
        await ingestion.ingest(
            session,
            account_id=s.account_id,
            records=[ingestion.RawRecord(data, json.dumps(data))],
            now=now,
        )
    # Rolled up: a transaction still open elsewhere in the database (another test's server
    # or worker, on a busy machine) holds the horizon below the event for a while; the
    # worker's sweep would come back, so does this.
    deadline = time.monotonic() + 60
    while True:
        async with unit_of_work(session_factory) as session:
            step = await rollups.rollup_account(session, account_id=s.account_id, max_events=1000)
        if step.events or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    async with unit_of_work(session_factory) as session:
        await invoice_rating.rerate_customer(
            session, account_id=s.account_id, customer_id=s.customer_id, now=now
        )


async def _lines(session_factory: SessionFactory, s: Setup) -> list[WalletLedgerEntry]:
    async with session_factory() as session:
        return list(
            await session.scalars(
                select(WalletLedgerEntry)
                .where(
                    col(WalletLedgerEntry.account_id) == s.account_id,
                    col(WalletLedgerEntry.customer_id) == s.customer_id,
                )
                .order_by(col(WalletLedgerEntry.seq))
            )
        )


async def _balance(session_factory: SessionFactory, s: Setup, now: datetime) -> Decimal:
    async with session_factory() as session:
        return await wallets.balance(
            session, account_id=s.account_id, customer_id=s.customer_id, currency="USD", now=now
        )


async def _statement(
    session_factory: SessionFactory, s: Setup, *, after: int | None = None, limit: int = 500
) -> list[wallet_statement.StatementLine]:
    async with session_factory() as session:
        page = await wallet_statement.ledger(
            session,
            account_id=s.account_id,
            customer_id=s.customer_id,
            currency="USD",
            limit=limit,
            after=after,
        )
    return page.items


def _exact(lines: list[WalletLedgerEntry], balance: Decimal) -> None:
    """Grants - consumption - expiries is the balance, to the last digit."""
    grants = sum((x.amount for x in lines if x.kind is LedgerKind.GRANT), D(0))
    used = -sum((x.amount for x in lines if x.kind is LedgerKind.CONSUMPTION), D(0))
    expired = -sum((x.amount for x in lines if x.kind is LedgerKind.EXPIRY), D(0))
    assert grants - used - expired == balance


async def test_fifty_rerates_of_one_invoice_leave_one_consumption_line(
    session_factory: SessionFactory,
) -> None:
    start = datetime.now(UTC)
    s = await _setup(session_factory, start)
    grant_id = await _grant(session_factory, s, "20", start)
    used, firsts, now = 0, [], start
    for value in range(1, 51):
        now = datetime.now(UTC)
        await _use(session_factory, s, value, now)
        used += value
        due = (used * PRICE).quantize(CENT, ROUND_HALF_UP)  # by hand: one line, half-up cents
        lines = [x for x in await _lines(session_factory, s) if x.kind is LedgerKind.CONSUMPTION]
        assert len(lines) == 1
        assert lines[0].grant_id == grant_id
        assert lines[0].amount == -min(due, D(20))
        firsts.append(lines[0].created_at)
    assert used == 1275 and (used * PRICE).quantize(CENT, ROUND_HALF_UP) == D("16.58")
    lines = await _lines(session_factory, s)
    assert [x.kind for x in lines] == [LedgerKind.GRANT, LedgerKind.CONSUMPTION]
    consumption = lines[1]
    assert consumption.amount == D("-16.58")
    assert set(firsts) == {consumption.created_at}  # created once, at the first draw
    assert consumption.updated_at == now > consumption.created_at  # moved by the last re-rate
    balance = await _balance(session_factory, s, now)
    assert balance == D("3.42")
    _exact(lines, balance)
    statement = await _statement(session_factory, s)
    assert [line.balance_after for line in statement] == [D(20), D("3.42")]
    async with session_factory() as session:
        invoice = await session.scalar(
            select(Invoice).where(col(Invoice.id) == consumption.invoice_id)
        )
    assert invoice is not None and invoice.credits_applied == D("16.58")
    assert statement[1].period_start == invoice.period_start
    assert statement[1].period_end == invoice.period_end


async def test_two_grants_two_lines_and_a_line_given_back_in_full_goes(
    session_factory: SessionFactory,
) -> None:
    now = datetime.now(UTC)
    s = await _setup(session_factory, now)
    first = await _grant(session_factory, s, "5", now, priority=1)
    second = await _grant(session_factory, s, "10", now, priority=2)
    await _use(session_factory, s, 600, now)  # 600 x 0.013 = 7.80: 5 from the first, 2.80 after
    lines = [x for x in await _lines(session_factory, s) if x.kind is LedgerKind.CONSUMPTION]
    assert {(x.grant_id, x.amount) for x in lines} == {(first, D(-5)), (second, D("-2.80"))}
    assert len({x.invoice_id for x in lines}) == 1
    invoice_id = lines[0].invoice_id
    assert invoice_id is not None
    assert await _balance(session_factory, s, now) == D("7.20")
    _exact(await _lines(session_factory, s), D("7.20"))

    # The invoice shrinks to 3.00 (e.g. events cancelled): the grant drawn last gives back
    # first; holding nothing of it any more, its line is removed, not left at 0.
    async with unit_of_work(session_factory) as session:
        held = await wallets.draw(
            session,
            account_id=s.account_id,
            customer_id=s.customer_id,
            currency="USD",
            invoice_id=invoice_id,
            due=D(3),
            now=now + timedelta(seconds=1),
        )
    assert held == D(3)
    lines = await _lines(session_factory, s)
    assert [(x.kind, x.grant_id, x.amount) for x in lines] == [
        (LedgerKind.GRANT, first, D(5)),
        (LedgerKind.GRANT, second, D(10)),
        (LedgerKind.CONSUMPTION, first, D(-3)),
    ]
    assert await _balance(session_factory, s, now) == D(12)
    _exact(lines, D(12))
    statement = await _statement(session_factory, s)
    assert [line.balance_after for line in statement] == [D(5), D(15), D(12)]
    # Paging keeps the running balance of the whole wallet.
    assert [
        x.balance_after for x in await _statement(session_factory, s, after=statement[0].entry.seq)
    ] == [D(15), D(12)]


async def test_each_period_has_its_own_line(session_factory: SessionFactory) -> None:
    """A platform fee of 2.00 a month from last month on: two invoices, a line each."""
    now = datetime.now(UTC)
    s = await _setup(session_factory, now, fee=D("2.00"))
    grant_id = await _grant(session_factory, s, "10", now)
    last_month = floor_interval(
        floor_interval(now, PeriodInterval.MONTH) - timedelta(days=1), PeriodInterval.MONTH
    )
    async with unit_of_work(session_factory) as session:
        plan = await plans.default_plan(session, s.account_id)
        assert plan is not None
        await assignments.assign_plan(
            session,
            account_id=s.account_id,
            customer_id=s.customer_id,
            plan_id=plan.id,
            start_time=last_month,
            now=now,
        )
        await invoice_rating.rerate_customer(
            session, account_id=s.account_id, customer_id=s.customer_id, now=now
        )
    lines = [x for x in await _lines(session_factory, s) if x.kind is LedgerKind.CONSUMPTION]
    assert len(lines) == 2
    assert {x.grant_id for x in lines} == {grant_id}
    assert [x.amount for x in lines] == [D(-2), D(-2)]
    statement = [x for x in await _statement(session_factory, s) if x.period_start is not None]
    assert sorted(x.period_start for x in statement) == [
        last_month,
        floor_interval(now, PeriodInterval.MONTH),
    ]
    assert await _balance(session_factory, s, now) == D(6)


async def test_expiry_lines_stay_and_credit_given_back_after_expiry_expires_too(
    session_factory: SessionFactory,
) -> None:
    now = datetime.now(UTC)
    s = await _setup(session_factory, now)
    brief = await _grant(
        session_factory, s, "4", now, priority=1, expires_at=now + timedelta(hours=1)
    )
    await _grant(session_factory, s, "10", now, priority=2)
    await _use(session_factory, s, 100, now)  # 1.30 from the short-lived grant
    later = now + timedelta(hours=2)
    async with unit_of_work(session_factory) as session:
        assert await wallets.expire(session, account_id=s.account_id, now=later) >= 1
    lines = await _lines(session_factory, s)
    expiry = [x for x in lines if x.kind is LedgerKind.EXPIRY]
    assert [(x.grant_id, x.amount) for x in expiry] == [(brief, D("-2.70"))]
    assert await _balance(session_factory, s, later) == D(10)
    _exact(lines, D(10))
    # The invoice then shrinks to nothing: the 1.30 it gives back belonged to an expired grant,
    # so it expires too; the balance does not move and the statement still adds up.
    invoice_id = next(x.invoice_id for x in lines if x.kind is LedgerKind.CONSUMPTION)
    assert invoice_id is not None
    async with unit_of_work(session_factory) as session:
        await wallets.draw(
            session,
            account_id=s.account_id,
            customer_id=s.customer_id,
            currency="USD",
            invoice_id=invoice_id,
            due=D(0),
            now=later,
        )
    lines = await _lines(session_factory, s)
    assert [x.kind for x in lines] == [LedgerKind.GRANT, LedgerKind.GRANT, LedgerKind.EXPIRY]
    assert lines[2].amount == D(-4) and lines[2].updated_at == later
    assert await _balance(session_factory, s, later) == D(10)
    _exact(lines, D(10))


async def test_concurrent_rerates_of_one_invoice_make_one_line(
    session_factory: SessionFactory,
) -> None:
    now = datetime.now(UTC)
    s = await _setup(session_factory, now)
    await _grant(session_factory, s, "50", now)
    await _use(session_factory, s, 100, now)
    await _use(session_factory, s, 200, now + timedelta(seconds=1))

    async def rerate() -> None:
        async with unit_of_work(session_factory) as session:
            await invoice_rating.rerate_customer(
                session, account_id=s.account_id, customer_id=s.customer_id, now=now
            )

    await asyncio.gather(*(rerate() for _ in range(10)))
    lines = [x for x in await _lines(session_factory, s) if x.kind is LedgerKind.CONSUMPTION]
    assert [x.amount for x in lines] == [D("-3.90")]
    # And the database itself refuses a second line for the same (invoice, grant).
    with pytest.raises(IntegrityError):
        async with unit_of_work(session_factory) as session:
            await session.execute(
                text(
                    "INSERT INTO wallet_ledger (account_id, customer_id, currency, kind, amount,"
                    " grant_id, invoice_id) VALUES (:a, 'c', 'USD', 'CONSUMPTION', -1, :g, :i)"
                ),
                {"a": s.account_id, "g": lines[0].grant_id, "i": lines[0].invoice_id},
            )
