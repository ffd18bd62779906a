"""The dashboard read path at 10,000 customers: a page of customers alone (query A), the same
page with every nested figure a dashboard shows (query B), and the open invoices sorted by
total across all customers — through HTTP GraphQL, one API process.

    .venv/bin/python bench/dashboard.py [--customers 10000] [--runs 40]

Customers are on a monthly plan with usage rolled up and rated, every third with credits. The
statement count of each query is read with an SQLAlchemy hook on an in-process app over the
same database (the page size does not change it: tests/test_read_path.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from common import (
    REDIS_URL,
    SECRET_KEY,
    fresh_database,
    ingest_all,
    percentile,
    roll_up_and_open,
    server,
)
from sqlalchemy import event, text

from meterflow.app import create_app
from meterflow.config import Settings
from meterflow.db import create_engine, create_session_factory, unit_of_work
from meterflow.models import ApiKeyScope, MeterType, PeriodInterval
from meterflow.services import (
    accounts,
    ingestion,
    meters,
    plans,
    wallets,
)
from meterflow.services.meters import MeterSpec
from meterflow.services.plans import ItemSpec, PlanSpec

DATABASE = "meterflow_bench_dashboard"
QUERY_A = "{ customers(first: 100) { edges { node { customerId } } } }"
QUERY_B = """{ customers(first: 100) { edges { node { customerId
    currentUsage { meterApiName value }
    currentInvoice { total lines { amount } }
    wallet { balance }
    plan { name } } } } }"""
QUERY_INVOICES = """{ invoices(filter: {status: OPEN}, orderBy: {field: TOTAL, direction: DESC},
    first: 100) { edges { node { customerId total } } } }"""


async def seed(url: str, customers: int) -> str:
    engine = create_engine(url)
    factory = create_session_factory(engine)
    now = datetime.now(UTC)
    async with unit_of_work(factory) as session:
        account = await accounts.create_account(session, name="dashboard")
        key = await accounts.issue_api_key(
            session, account_id=account.id, name="bench", scope=ApiKeyScope.ADMIN
        )
        for meter in ("calls", "storage"):
            await meters.create_meter(
                session,
                account_id=account.id,
                meter_api_name=meter,
                spec=MeterSpec(meter, MeterType.SUM),
            )
        loaded = await plans.create_plan(
            session,
            account_id=account.id,
            spec=PlanSpec(
                name="monthly",
                interval=PeriodInterval.MONTH,
                is_default=True,  # customers made by their first event join it
                items=(
                    ItemSpec("calls", {"type": "per_unit", "unitPrice": "0.01"}),
                    ItemSpec("storage", {"type": "per_unit", "unitPrice": "0.5"}),
                ),
            ),
        )
        await plans.activate_plan(session, account_id=account.id, plan_id=loaded.plan.id, now=now)
    millis = int((now - timedelta(minutes=1)).timestamp() * 1000)
    records = []
    for i in range(customers):
        for meter, value in (("calls", 1 + i % 50), ("storage", 1 + i % 3)):
            data = {
                "meterApiName": meter,
                "customerId": f"c-{i:05d}",
                "meterValue": value,
                "meterTimeInMillis": millis,
                "uniqueId": f"{i}-{meter}",
            }
            records.append(ingestion.RawRecord(data, json.dumps(data)))
    await ingest_all(factory, account.id, records, now)  # makes the customers
    for start in range(0, customers, 3 * 500):
        async with unit_of_work(factory) as session:
            for i in range(start, min(customers, start + 3 * 500), 3):
                await wallets.grant(
                    session,
                    account_id=account.id,
                    customer_id=f"c-{i:05d}",
                    amount=Decimal(5),
                    currency="USD",
                    priority=1,
                    expires_at=None,
                    reason=None,
                    purchased=True,
                    now=now,
                )
    await roll_up_and_open(factory, account.id, now)  # the invoices draw on the credits
    # Planner statistics, as autovacuum would have gathered them long before a dashboard reads
    # 10,000 customers (right after a bulk load the planner guesses, and picks worse plans).
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE"))
        await conn.commit()
    await engine.dispose()
    return key.secret


async def timed(client: httpx.AsyncClient, key: str, query: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        response = await client.post("/graphql", json={"query": query}, headers={"X-API-Key": key})
        out.append((time.perf_counter() - began) * 1000)
        body = response.json()
        if "errors" in body:
            raise RuntimeError(json.dumps(body["errors"]))
    return out


async def statements(url: str, key: str, query: str) -> int:
    app = create_app(Settings(database_url=url, redis_url=REDIS_URL, secret_key=SECRET_KEY))  # type: ignore[arg-type]
    count = 0

    def counted(*_: Any) -> None:
        nonlocal count
        count += 1

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await client.post("/graphql", json={"query": query}, headers={"X-API-Key": key})
        event.listen(app.state.engine.sync_engine, "before_cursor_execute", counted)
        await client.post("/graphql", json={"query": query}, headers={"X-API-Key": key})
    await app.state.engine.dispose()
    return count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    url = await fresh_database(DATABASE)
    began = time.perf_counter()
    key = await seed(url, args.customers)
    print(f"seeded {args.customers:,} customers in {time.perf_counter() - began:.1f} s")
    with server(url) as base:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            for query in (QUERY_A, QUERY_B, QUERY_INVOICES):
                await timed(client, key, query, 3)  # warm
            a = await timed(client, key, QUERY_A, args.runs)
            b = await timed(client, key, QUERY_B, args.runs)
            inv = await timed(client, key, QUERY_INVOICES, args.runs)
    counts = [await statements(url, key, q) for q in (QUERY_A, QUERY_B, QUERY_INVOICES)]
    ratio = percentile(b, 50) / percentile(a, 50)
    for label, times, count in (
        ("A  customers(first: 100)", a, counts[0]),
        ("B  + usage, invoice, wallet, plan", b, counts[1]),
        ("invoices OPEN by total, first 100", inv, counts[2]),
    ):
        print(
            f"{label:36} p50 {percentile(times, 50):6.1f} ms  "
            f"p95 {percentile(times, 95):6.1f} ms  {count} statements"
        )
    print(f"B p50 / A p50 = {ratio:.2f} (target ≤ 4)")


if __name__ == "__main__":
    asyncio.run(main())
