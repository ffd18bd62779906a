"""The period close across many accounts: how long it takes, and its longest transaction.

    .venv/bin/python bench/close.py [--customers 10000] [--accounts 20]

Every account has a DAY plan (default, so auto-created customers join it) and customers with
usage, rolled up and rated; then the period closes (`period_close.close_all`, as the worker's
cron runs it). The longest single transaction is what holds every tenant's rollup horizon.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from common import fresh_database, ingest_and_bill
from sqlalchemy import event

from meterflow.db import create_engine, create_session_factory, unit_of_work
from meterflow.models import MeterType, PeriodInterval
from meterflow.services import (
    accounts,
    ingestion,
    meters,
    period_close,
    plans,
)
from meterflow.services.meters import MeterSpec
from meterflow.services.plans import ItemSpec, PlanSpec

DATABASE = "meterflow_bench_close"


class TransactionClock:
    """Times every database transaction of an engine (begin → commit or rollback)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.count = 0

    def attach(self, sync_engine: Any) -> None:
        event.listen(sync_engine, "begin", self._begin)
        event.listen(sync_engine, "commit", self._end)
        event.listen(sync_engine, "rollback", self._end)

    def _begin(self, conn: Any) -> None:
        conn.info["began"] = time.perf_counter()

    def _end(self, conn: Any) -> None:
        began = conn.info.pop("began", None)
        if began is not None:
            self.longest = max(self.longest, time.perf_counter() - began)
            self.count += 1

    def reset(self) -> None:
        self.longest, self.count = 0.0, 0


def records(customers: list[str], now: datetime) -> list[ingestion.RawRecord]:
    millis = int((now - timedelta(minutes=1)).timestamp() * 1000)
    out = []
    for customer in customers:
        for i in range(2):
            data = {
                "meterApiName": "calls",
                "customerId": customer,
                "meterValue": 1 + i,
                "meterTimeInMillis": millis,
                "uniqueId": f"{customer}-{i}",
            }
            out.append(ingestion.RawRecord(data, json.dumps(data)))
    return out


async def seed(factory: Any, per_account: int, now: datetime) -> uuid.UUID:
    async with unit_of_work(factory) as session:
        account = await accounts.create_account(session, name="bench")
        await meters.create_meter(
            session,
            account_id=account.id,
            meter_api_name="calls",
            spec=MeterSpec("calls", MeterType.SUM),
        )
        loaded = await plans.create_plan(
            session,
            account_id=account.id,
            spec=PlanSpec(
                name="daily",
                interval=PeriodInterval.DAY,
                is_default=True,
                items=(ItemSpec("calls", {"type": "per_unit", "unitPrice": "0.01"}),),
            ),
        )
        await plans.activate_plan(session, account_id=account.id, plan_id=loaded.plan.id, now=now)
    await ingest_and_bill(
        factory, account.id, records([f"c-{i}" for i in range(per_account)], now), now
    )
    return account.id


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--batch", type=int, default=period_close.DEFAULT_BATCH)
    args = parser.parse_args()
    url = await fresh_database(DATABASE)
    engine = create_engine(url)
    factory = create_session_factory(engine)
    now = datetime.now(UTC)
    began = time.perf_counter()
    for _ in range(args.accounts):
        await seed(factory, args.customers // args.accounts, now)
    seeded = time.perf_counter() - began

    clock = TransactionClock()
    clock.attach(engine.sync_engine)
    closing_time = now.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(
        days=1, seconds=1
    )
    began = time.perf_counter()
    report = await period_close.close_all(factory, clock=lambda: closing_time, batch=args.batch)
    closing = time.perf_counter() - began
    first = (clock.longest, clock.count)
    clock.reset()
    began = time.perf_counter()
    again = await period_close.close_all(factory, clock=lambda: closing_time, batch=args.batch)
    rerun = time.perf_counter() - began
    await engine.dispose()

    print(
        f"\nclose benchmark: {args.customers:,} customers in {args.accounts} accounts, "
        f"DAY plans, {args.batch} invoices per transaction"
    )
    print(f"seeded (usage ingested, rolled up, invoices opened) in {seeded:.1f} s")
    print(
        f"close: {report.finalized:,} finalized, {report.opened:,} next periods opened in "
        f"{closing:.1f} s; {first[1]} transactions, the longest {first[0] * 1000:.0f} ms"
    )
    print(
        f"run again: {again.finalized} finalized in {rerun:.2f} s; "
        f"{clock.count} transactions, the longest {clock.longest * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
