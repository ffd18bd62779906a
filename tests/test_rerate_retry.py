"""A re-rate that fails after its usage committed is not lost, and does not take the alert
evaluation down with it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import select
from sqlmodel import col

from meterflow.db import SessionFactory, unit_of_work
from meterflow.jobs import JobQueue
from meterflow.models import AlertEvent, Invoice
from meterflow.services import alerts, ingestion, invoice_rating
from meterflow.workers import rollup
from meterflow.workers.settings import OUTBOX_HANDLERS
from tests.billing_setup import per_unit_account


async def billed_account(
    factory: SessionFactory,
    *,
    alert_rule: bool = False,
    webhook: str | None = None,
    with_event: bool = True,
) -> uuid.UUID:
    """An account with a SUM meter priced at 0.5 per unit (a default plan), optionally an alert
    rule "any usage today" (to `webhook`, if given), and (`with_event`) one event of 4 units for
    customer r1."""
    async with unit_of_work(factory) as session:
        account_id, _ = await per_unit_account(
            session, name="retry", unit_price="0.5", is_default=True, now=datetime.now(UTC)
        )
        if alert_rule:
            from meterflow.secretbox import SecretBox
            from tests.conftest import TEST_SECRET_KEY

            await alerts.create_rule(
                session,
                account_id=account_id,
                spec=alerts.RuleSpec(
                    name="any use",
                    subject="USAGE",
                    condition="GREATER_THAN",
                    threshold=Decimal(0),
                    range="DAY",
                    meter_api_name="calls",
                    channels=({"type": "WEBHOOK", "target": webhook},) if webhook else (),
                ),
                allow_private_targets=True,
                now=datetime.now(UTC),
                box=SecretBox.from_keys((TEST_SECRET_KEY,)),
            )
    if with_event:
        await ingest_event(factory, account_id)
    return account_id


async def ingest_event(factory: SessionFactory, account: uuid.UUID) -> None:
    """4 units of "calls" for customer r1, a few seconds ago."""
    now = datetime.now(UTC)
    data = {
        "meterApiName": "calls",
        "customerId": "r1",
        "meterValue": 4,
        "uniqueId": "x",
        "meterTimeInMillis": int((now - timedelta(seconds=5)).timestamp() * 1000),
    }
    async with unit_of_work(factory) as session:
        await ingestion.ingest(
            session,
            account_id=account,
            records=[ingestion.RawRecord(data, json.dumps(data))],
            now=now,
        )


async def invoice_total(factory: SessionFactory, account: uuid.UUID) -> Decimal | None:
    """r1's running invoice as stored (reading it through the service would rate it)."""
    async with factory() as session:
        total = await session.scalar(
            select(Invoice.total).where(
                col(Invoice.account_id) == account, col(Invoice.customer_id) == "r1"
            )
        )
    return None if total is None else Decimal(total)


def failing_rerates(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """invoice_rating.rerate_customers raises while switch["fail"] is on."""
    real = invoice_rating.rerate_customers
    switch = {"fail": True}

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if switch["fail"]:
            raise RuntimeError("injected: the database hiccupped")
        return await real(*args, **kwargs)

    monkeypatch.setattr(invoice_rating, "rerate_customers", flaky)
    return switch


def worker_ctx(factory: SessionFactory, redis_url: str) -> dict[str, Any]:
    """What the worker hands its jobs."""
    return {
        "session_factory": factory,
        "jobs": JobQueue(redis_url),
        "redis": Redis.from_url(redis_url),
        "worker_id": "test-worker",
        "outbox_handlers": OUTBOX_HANDLERS,
    }


async def test_failed_rerate_is_retried_until_it_succeeds(
    session_factory: SessionFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await billed_account(session_factory)
    switch = failing_rerates(monkeypatch)
    ctx = worker_ctx(session_factory, redis_url)
    try:
        assert await rollup.usage_rollup(ctx, str(account)) == 1
        assert await invoice_total(session_factory, account) in (None, Decimal("0.00"))
        switch["fail"] = False
        # The re-rate is still owed: the retry (run as the worker's sweep would, once due)
        # brings the invoice up to date without any new event.
        from meterflow.services import outbox
        from meterflow.workers.outbox import run_outbox

        deadline = time.monotonic() + 10
        while await invoice_total(session_factory, account) != Decimal("2.00"):
            assert time.monotonic() < deadline, "the failed re-rate was never retried"
            await run_outbox(ctx, str(account), outbox.RERATE)
            await asyncio.sleep(0.2)
        async with session_factory() as session:
            assert await outbox.pending(session, account_id=account, kind=outbox.RERATE) == []
    finally:
        await ctx["jobs"].close()
        await ctx["redis"].aclose()


async def test_a_failing_rerate_never_drops_the_alert_evaluation(
    session_factory: SessionFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    account = await billed_account(session_factory, alert_rule=True)
    failing_rerates(monkeypatch)
    ctx = worker_ctx(session_factory, redis_url)
    try:
        assert await rollup.usage_rollup(ctx, str(account)) == 1
    finally:
        await ctx["jobs"].close()
        await ctx["redis"].aclose()
    async with session_factory() as session:
        fired = list(
            await session.scalars(select(AlertEvent).where(col(AlertEvent.account_id) == account))
        )
    assert [(e.customer_id, e.value) for e in fired] == [("r1", Decimal(4))]
