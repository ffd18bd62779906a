"""The rollup alone: events/s that `rollups.rollup_account` turns into hourly and daily usage.

    .venv/bin/python bench/rollup.py [--events 200000] [--customers 1000]

Events (a SUM meter with a region and an endpoint dimension, a COUNT and a MAX meter, spread
over the last day) are ingested through the ingestion service first; then the account is
rolled up step by step (50,000 events a step, as the worker does), timed. The totals rolled up
are checked against the events' own sums, so a fast wrong rollup cannot pass.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from common import fresh_database, ingest_all
from sqlalchemy import text

from meterflow.db import create_engine, create_session_factory, unit_of_work
from meterflow.models import MeterType
from meterflow.services import accounts, ingestion, meters, rollups
from meterflow.services.meters import MeterSpec

DATABASE = "meterflow_bench_rollup"
METERS = (
    ("calls", MeterType.SUM, ("region", "endpoint")),
    ("requests", MeterType.COUNT, ()),
    ("peak", MeterType.MAX, ()),
)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=1000)
    args = parser.parse_args()
    url = await fresh_database(DATABASE)
    engine = create_engine(url)
    factory = create_session_factory(engine)
    now = datetime.now(UTC)
    async with unit_of_work(factory) as session:
        account = await accounts.create_account(session, name="rollup")
        for name, kind, dims in METERS:
            await meters.create_meter(
                session,
                account_id=account.id,
                meter_api_name=name,
                spec=MeterSpec(name, kind, dimensions=dims),
            )
    records = []
    sums: dict[str, Decimal] = {name: Decimal(0) for name, _, _ in METERS}
    base = int((now - timedelta(days=1)).timestamp() * 1000)
    for i in range(args.events):
        name = METERS[i % 3][0]
        data = {
            "meterApiName": name,
            "customerId": f"c{i % args.customers}",
            "meterValue": 1 + i % 9,
            "meterTimeInMillis": base + (i * 431) % 86_400_000,
            "uniqueId": str(uuid.uuid4()),
        }
        if name == "calls":
            data["dimensions"] = {"region": ("eu", "us")[i % 2], "endpoint": f"/v{i % 4}"}
        sums[name] += 1 if name == "requests" else 1 + i % 9
        records.append(ingestion.RawRecord(data, json.dumps(data)))
    began = time.perf_counter()
    await ingest_all(factory, account.id, records, now)
    ingest_seconds = time.perf_counter() - began

    steps = 0
    began = time.perf_counter()
    while True:
        async with unit_of_work(factory) as session:
            step = await rollups.rollup_account(session, account_id=account.id)
        steps += 1
        if not step.more:
            break
    seconds = time.perf_counter() - began

    async with engine.connect() as conn:
        rolled = dict(
            (
                await conn.execute(
                    text(
                        "SELECT m.meter_api_name, CASE m.meter_type WHEN 'COUNT' THEN "
                        "sum(r.count) ELSE sum(r.sum) END FROM usage_rollups r JOIN meters m "
                        "ON m.account_id = r.account_id AND m.id = r.meter_id "
                        "WHERE m.meter_type <> 'MAX' GROUP BY m.meter_api_name, m.meter_type"
                    )
                )
            ).all()
        )
        daily = (
            await conn.execute(
                text("SELECT sum(count) FROM usage_daily WHERE account_id = :a"), {"a": account.id}
            )
        ).scalar()
    await engine.dispose()
    assert rolled == {"calls": sums["calls"], "requests": sums["requests"]}, (rolled, sums)
    assert daily == args.events, (daily, args.events)
    print(
        f"rollup: {args.events:,} events ({args.customers:,} customers, 3 meters) in {steps} "
        f"steps, {seconds:.1f} s: {args.events / seconds:,.0f} events/s "
        f"(ingested through the service at {args.events / ingest_seconds:,.0f} events/s)"
    )


if __name__ == "__main__":
    asyncio.run(main())
