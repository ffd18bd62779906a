"""The period close: behind the rollup watermark, per account, and only what is due.

Service level against the real database, and no worker: nothing rolls events up but the close.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from redis.asyncio import Redis
from sqlalchemy import select, text
from sqlmodel import col

from meterflow.db import SessionFactory, unit_of_work
from meterflow.models import Invoice, InvoiceStatus, PeriodInterval
from meterflow.services import (
    ingestion,
    invoice_rating,
    period_close,
)
from meterflow.workers.billing import close_billing_periods
from tests.billing_setup import per_unit_account, put_on_plan

UNIT_PRICE = "0.10"


def midnight(moment: datetime) -> datetime:
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


async def billed_account(
    factory: SessionFactory, customer_ids: list[str], *, grace_hours: int = 0
) -> uuid.UUID:
    """An account with one SUM meter priced per unit on DAY periods; its customers are on the
    plan since yesterday, their invoices opened as `assignPricingPlan` opens them."""
    now = datetime.now(UTC)
    yesterday = midnight(now) - timedelta(days=1)
    async with unit_of_work(factory) as session:
        account_id, plan_id = await per_unit_account(
            session,
            name="close",
            unit_price=UNIT_PRICE,
            interval=PeriodInterval.DAY,
            grace_hours=grace_hours,
            now=now,
        )
        await put_on_plan(
            session,
            account_id=account_id,
            plan_id=plan_id,
            customer_ids=customer_ids,
            start=yesterday,
            now=now,
        )
        for customer_id in customer_ids:
            await invoice_rating.rerate_customer(
                session, account_id=account_id, customer_id=customer_id, now=now
            )
    return account_id


async def commit_events(
    factory: SessionFactory, account_id: uuid.UUID, customer_id: str, values: list[str]
) -> None:
    """Committed, and not rolled up: no job is queued and no worker runs."""
    at = midnight(datetime.now(UTC)) - timedelta(hours=12)  # yesterday noon
    records = []
    for value in values:
        data = {
            "meterApiName": "calls",
            "customerId": customer_id,
            "meterValue": value,
            "uniqueId": str(uuid.uuid4()),
            "meterTimeInMillis": int(at.timestamp() * 1000),
        }
        records.append(ingestion.RawRecord(data, json.dumps(data)))
    async with unit_of_work(factory) as session:
        report = await ingestion.ingest(
            session, account_id=account_id, records=records, now=datetime.now(UTC)
        )
    assert report.accepted == len(values)


def expected_total(values: list[str]) -> Decimal:
    exact = sum((Fraction(v) for v in values), Fraction(0)) * Fraction(UNIT_PRICE)
    cents = Decimal(exact.numerator) / Decimal(exact.denominator)
    return cents.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


async def invoices_of(
    factory: SessionFactory, account_id: uuid.UUID, customer_id: str
) -> list[Invoice]:
    async with factory() as session:
        return list(
            await session.scalars(
                select(Invoice)
                .where(
                    col(Invoice.account_id) == account_id, col(Invoice.customer_id) == customer_id
                )
                .order_by(col(Invoice.period_start))
            )
        )


async def test_close_bills_events_committed_but_not_yet_rolled_up(
    session_factory: SessionFactory, redis_url: str
) -> None:
    account_id = await billed_account(session_factory, ["late-roller"])
    values = ["3", "4", "5.55"]
    await commit_events(session_factory, account_id, "late-roller", values)
    async with session_factory() as session:
        mark = await session.scalar(
            text("SELECT max(xid) FROM usage_meter_watermarks WHERE account_id = :a"),
            {"a": account_id},
        )
    assert mark is None, "nothing may have rolled the events up before the close"

    redis = Redis.from_url(redis_url)
    try:  # the worker's cron job, run in-process
        await close_billing_periods({"session_factory": session_factory, "redis": redis})
    finally:
        await redis.aclose()

    yesterday, today = await invoices_of(session_factory, account_id, "late-roller")
    assert yesterday.status is InvoiceStatus.FINALIZED
    assert yesterday.total == expected_total(values) == Decimal("1.26")
    assert today.status is InvoiceStatus.OPEN and today.total == Decimal("0.00")


async def test_one_account_failing_does_not_stop_the_others(
    session_factory: SessionFactory,
) -> None:
    broken = await billed_account(session_factory, ["b1"])
    healthy = await billed_account(session_factory, ["h1"])
    await commit_events(session_factory, broken, "b1", ["2"])
    await commit_events(session_factory, healthy, "h1", ["7", "1.5"])
    # A price model the engine cannot read (a hand edit, a bad data migration): rating raises.
    async with unit_of_work(session_factory) as session:
        models = (
            await session.execute(
                text("SELECT id, price_model FROM plan_items WHERE account_id = :a"), {"a": broken}
            )
        ).all()
        await session.execute(
            text('UPDATE plan_items SET price_model = \'{"type": "bogus"}\' WHERE account_id = :a'),
            {"a": broken},
        )
    try:
        report = await period_close.close_all(session_factory, clock=lambda: datetime.now(UTC))
    finally:
        # The database is shared with the workers of later tests, whose minutely close would
        # log this account's failure into their output: put the models back as they were.
        async with unit_of_work(session_factory) as session:
            for item_id, model in models:
                await session.execute(
                    text("UPDATE plan_items SET price_model = CAST(:m AS jsonb) WHERE id = :i"),
                    {"m": json.dumps(model), "i": item_id},
                )

    assert broken in report.failed and healthy not in report.failed
    (b_yesterday, _) = await invoices_of(session_factory, broken, "b1")
    assert b_yesterday.status is InvoiceStatus.OPEN  # rolled back, retried next round
    h_yesterday, _ = await invoices_of(session_factory, healthy, "h1")
    assert h_yesterday.status is InvoiceStatus.FINALIZED
    assert h_yesterday.total == expected_total(["7", "1.5"]) == Decimal("0.85")


async def test_grace_invoice_is_left_alone_until_due(session_factory: SessionFactory) -> None:
    account_id = await billed_account(session_factory, ["g1"], grace_hours=48)
    await commit_events(session_factory, account_id, "g1", ["10"])
    now = datetime.now(UTC)

    first = await period_close.close_account(session_factory, account_id=account_id, now=now)
    assert (first.to_grace, first.finalized) == (1, 0)
    (moved, _) = await invoices_of(session_factory, account_id, "g1")
    assert moved.status is InvoiceStatus.GRACE and moved.total == Decimal("1.00")

    # Every minute the close runs again: a GRACE invoice not yet due is not re-rated.
    for minutes in (1, 2):
        again = await period_close.close_account(
            session_factory, account_id=account_id, now=now + timedelta(minutes=minutes)
        )
        assert (again.to_grace, again.finalized) == (0, 0)
    (still, _) = await invoices_of(session_factory, account_id, "g1")
    assert (still.status, still.version, still.updated_at) == (
        InvoiceStatus.GRACE,
        moved.version,
        moved.updated_at,
    )

    # Once its grace is over, it is finalized, with what arrived during the grace.
    await commit_events(session_factory, account_id, "g1", ["5"])
    due = midnight(now) + timedelta(hours=48, seconds=1)
    done = await period_close.close_account(session_factory, account_id=account_id, now=due)
    assert done.finalized == 1
    (final, *_) = await invoices_of(session_factory, account_id, "g1")
    assert final.status is InvoiceStatus.FINALIZED
    assert final.total == expected_total(["10", "5"]) == Decimal("1.50")


async def test_close_skips_an_account_whose_rollups_cannot_catch_up(
    session_factory: SessionFactory,
) -> None:
    account_id = await billed_account(session_factory, ["w1"])
    # A long ingest transaction, still in flight, took its xid before a later batch committed.
    # The later batch must be billed, but a watermark cannot pass the one in flight: the close
    # waits for it, then gives up on this account for this round rather than rate stale.
    async with session_factory() as blocker:
        await blocker.execute(text("SELECT pg_current_xact_id()"))
        await commit_events(session_factory, account_id, "w1", ["6"])
        report = await period_close.close_account(
            session_factory, account_id=account_id, now=datetime.now(UTC), wait_seconds=0.3
        )
        await blocker.rollback()
    assert report.not_caught_up == [account_id] and report.finalized == 0
    (yesterday, _) = await invoices_of(session_factory, account_id, "w1")
    assert yesterday.status is InvoiceStatus.OPEN

    after = await period_close.close_account(
        session_factory, account_id=account_id, now=datetime.now(UTC)
    )
    assert (after.finalized, after.not_caught_up) == (1, [])
    (yesterday, _) = await invoices_of(session_factory, account_id, "w1")
    assert yesterday.status is InvoiceStatus.FINALIZED
    assert yesterday.total == expected_total(["6"]) == Decimal("0.60")
