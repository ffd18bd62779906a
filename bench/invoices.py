"""Invoice speed: re-rating one customer's open invoice after a batch, and closing a period
for many customers.

    .venv/bin/python bench/invoices.py [--customers 10000] [--rerates 200]

Runs the real services in-process against PostgreSQL (no HTTP in the timed parts).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from common import fresh_database, new_account, percentile

from meterflow.db import create_engine, create_session_factory, unit_of_work
from meterflow.models import MeterType, PeriodInterval
from meterflow.services import (
    ingestion,
    invoice_lifecycle,
    invoice_rating,
    meters,
    period_close,
    plans,
    rollups,
    wallets,
)
from meterflow.services.meters import MeterSpec
from meterflow.services.plans import ItemSpec, PlanSpec

DATABASE = "meterflow_bench_invoices"


def batch(customers: list[str], per_customer: int, now: datetime) -> list[ingestion.RawRecord]:
    records = []
    millis = int((now - timedelta(minutes=1)).timestamp() * 1000)
    for customer in customers:
        for i in range(per_customer):
            for meter, dims in (("calls", {"region": ("us", "eu")[i % 2]}), ("tokens", {})):
                data = {
                    "meterApiName": meter,
                    "customerId": customer,
                    "meterValue": 1 + i % 7,
                    "meterTimeInMillis": millis,
                    "uniqueId": uuid.uuid4().hex,
                    "dimensions": dims,
                }
                records.append(ingestion.RawRecord(data, json.dumps(data)))
    return records


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--rerates", type=int, default=200)
    args = parser.parse_args()

    url = await fresh_database(DATABASE)
    account_text, _ = await new_account(url)
    account = uuid.UUID(account_text)
    engine = create_engine(url, pool_size=4)
    factory = create_session_factory(engine)
    now = datetime.now(UTC)

    async with unit_of_work(factory) as session:
        await meters.create_meter(
            session,
            account_id=account,
            meter_api_name="calls",
            spec=MeterSpec("calls", MeterType.SUM, dimensions=("region",)),
        )
        await meters.create_meter(
            session,
            account_id=account,
            meter_api_name="tokens",
            spec=MeterSpec("tokens", MeterType.SUM),
        )
        loaded = await plans.create_plan(
            session,
            account_id=account,
            spec=PlanSpec(
                name="bench",
                interval=PeriodInterval.DAY,
                is_default=True,
                items=(
                    ItemSpec(
                        "calls",
                        {
                            "type": "dimension",
                            "dimensions": ["region"],
                            "prices": [
                                {
                                    "values": ["eu"],
                                    "model": {
                                        "type": "package",
                                        "packageSize": 100,
                                        "packagePrice": "1.50",
                                    },
                                }
                            ],
                            "default": {"type": "per_unit", "unitPrice": "0.02"},
                        },
                        Decimal(50),
                    ),
                    ItemSpec(
                        "tokens",
                        {
                            "type": "graduated",
                            "tiers": [
                                {"upTo": 1000, "unitPrice": "0.001"},
                                {"upTo": None, "unitPrice": "0.0005"},
                            ],
                        },
                    ),
                ),
            ),
        )
        await plans.activate_plan(
            session, account_id=account, plan_id=loaded.plan.id, now=datetime.now(UTC)
        )

    async def ingest_and_roll(records: list[ingestion.RawRecord]) -> None:
        for start in range(0, len(records), 5000):
            async with unit_of_work(factory) as session:
                await ingestion.ingest(
                    session, account_id=account, records=records[start : start + 5000], now=now
                )
        while True:
            async with unit_of_work(factory) as session:
                step = await rollups.rollup_account(session, account_id=account)
            if not step.more:
                return

    # 1. One customer's invoice, re-rated after each small batch (with prepaid credits).
    await ingest_and_roll(batch(["solo"], 5, now))
    async with unit_of_work(factory) as session:
        await wallets.grant(
            session,
            account_id=account,
            customer_id="solo",
            amount=Decimal(50),
            currency="USD",
            priority=1,
            expires_at=None,
            reason="bench",
            purchased=True,
            now=now,
        )
    rerate_ms = []
    for _ in range(args.rerates):
        await ingest_and_roll(batch(["solo"], 5, now))
        started = time.perf_counter()
        async with unit_of_work(factory) as session:
            await invoice_rating.rerate_customer(
                session, account_id=account, customer_id="solo", now=datetime.now(UTC)
            )
        rerate_ms.append((time.perf_counter() - started) * 1000)

    # 2. Many customers: usage for all of them, their invoices open, then the period closes.
    customers = [f"cust-{i}" for i in range(args.customers)]
    began = time.perf_counter()
    await ingest_and_roll(batch(customers, 2, now))
    seeded = time.perf_counter() - began
    began = time.perf_counter()
    opened = 0
    while True:  # in batches, as the close opens them
        async with unit_of_work(factory) as session:
            step = await invoice_lifecycle.open_current_periods(
                session, account_id=account, now=now
            )
        opened += step
        if step < invoice_lifecycle.OPEN_AT_MOST:
            break
    opening = time.perf_counter() - began
    tomorrow = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    began = time.perf_counter()
    report = await period_close.close_account(
        factory, account_id=account, now=tomorrow + timedelta(seconds=1)
    )
    closing = time.perf_counter() - began
    began = time.perf_counter()
    again = await period_close.close_account(
        factory, account_id=account, now=tomorrow + timedelta(seconds=1)
    )
    rerun = time.perf_counter() - began
    await engine.dispose()

    print(
        "\ninvoice benchmark: plan with a dimension-priced package item (50 included) and a "
        "graduated item, DAY periods"
    )
    print(
        f"re-rate one customer's open invoice after a batch ({args.rerates} times): "
        f"p50 {statistics.median(rerate_ms):.1f} ms  p95 {percentile(rerate_ms, 95):.1f} ms  "
        f"p99 {percentile(rerate_ms, 99):.1f} ms"
    )
    print(
        f"{args.customers:,} customers: usage ingested and rolled up in {seeded:.1f} s; "
        f"{opened:,} invoices opened and rated in {opening:.1f} s"
    )
    print(
        f"close the period: {report.finalized:,} finalized, {report.opened:,} next periods "
        f"opened in {closing:.1f} s; run again: {again.finalized} finalized in {rerun:.2f} s"
    )


if __name__ == "__main__":
    asyncio.run(main())
