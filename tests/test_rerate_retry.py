"""A re-rate that fails after its usage committed is retried as its own job, not lost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis

from meterflow.db import SessionFactory, unit_of_work
from meterflow.jobs import JobQueue
from meterflow.models import MeterType, PeriodInterval
from meterflow.services import accounts, ingestion, invoice_queries, invoice_rating, meters, plans
from meterflow.services.meters import MeterSpec
from meterflow.services.plans import ItemSpec, PlanSpec
from meterflow.workers import rollup


async def test_failed_rerate_becomes_a_retried_job(
    session_factory: SessionFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    async with unit_of_work(session_factory) as session:
        account = await accounts.create_account(session, name="retry")
        await meters.create_meter(
            session,
            account_id=account.id,
            meter_api_name="calls",
            spec=MeterSpec("calls", MeterType.SUM),
        )
        plan = await plans.create_plan(
            session,
            account_id=account.id,
            spec=PlanSpec(
                name="p",
                interval=PeriodInterval.MONTH,
                is_default=True,
                items=(ItemSpec("calls", {"type": "per_unit", "unitPrice": "0.5"}),),
            ),
        )
        await plans.activate_plan(
            session, account_id=account.id, plan_id=plan.plan.id, now=datetime.now(UTC)
        )
    data = {
        "meterApiName": "calls",
        "customerId": "r1",
        "meterValue": 4,
        "uniqueId": "x",
        "meterTimeInMillis": int((now - timedelta(seconds=5)).timestamp() * 1000),
    }
    async with unit_of_work(session_factory) as session:
        await ingestion.ingest(
            session,
            account_id=account.id,
            records=[ingestion.RawRecord(data, json.dumps(data))],
            now=now,
        )

    real = invoice_rating.rerate_customers
    failures = []

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        if not failures:
            failures.append(1)
            raise RuntimeError("injected: the database hiccupped")
        return await real(*args, **kwargs)

    monkeypatch.setattr(invoice_rating, "rerate_customers", flaky)
    redis = Redis.from_url(redis_url)
    jobs = JobQueue(redis_url)
    ctx = {"session_factory": session_factory, "jobs": jobs, "redis": redis}
    try:
        assert await rollup.usage_rollup(ctx, str(account.id)) == 1
        assert failures == [1]
        job_id = f"rerate:{account.id}:r1"
        assert await redis.exists(f"arq:job:{job_id}"), "the retry was not queued"
        # The retry (per customer), run as the worker would, brings the invoice up to date.
        await rollup.rerate_customer(ctx, str(account.id), "r1")
        async with unit_of_work(session_factory) as session:
            invoice = await invoice_queries.current_invoice(
                session, account_id=account.id, customer_id="r1", now=datetime.now(UTC)
            )
        assert invoice is not None and invoice.total == Decimal("2.00")
    finally:
        await redis.delete(f"arq:job:rerate:{account.id}:r1")
        await jobs.close()
        await redis.aclose()
