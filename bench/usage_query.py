"""Usage query speed over a large account: 10M events, 1,000 customers, 5 meters, 3 dimensions,
90 days. Seeds by COPY straight into the event partitions, rolls them up with the real rollup
code (timed too), then times the queries through GraphQL against one API process.

    .venv/bin/python bench/usage_query.py [--events 10000000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import httpx
from common import (
    EVENT_COPY_COLUMNS,
    database_url,
    fresh_database,
    graphql,
    new_account,
    percentile,
    server,
)

from meterflow.db import create_engine, create_session_factory, unit_of_work
from meterflow.services import rollups

DATABASE = "meterflow_bench_usage"
METERS = [
    ("api-calls", "SUM"),
    ("tokens", "SUM"),
    ("gb-seconds", "SUM"),
    ("storage-gb", "MAX"),
    ("requests", "SUM"),
]
USAGE = """query($input: UsageQueryInput!) { usage(input: $input) {
  groups { group total values { start value } } } }"""


async def seed(
    url: str, account_id: str, key: str, base: str, events: int, end: datetime
) -> dict[str, str]:
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        for name, kind in METERS:
            await graphql(
                client,
                key,
                f"""mutation {{ createMeter(input: {{meterApiName:
                "{name}", meterType: {kind}, dimensions: ["region", "tier", "endpoint"]}})
                {{ __typename }} }}""",
            )
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        meter_ids = {
            r["meter_api_name"]: r["id"]
            for r in await conn.fetch(
                "SELECT meter_api_name, id FROM meters WHERE account_id = $1", uuid.UUID(account_id)
            )
        }
        start = end - timedelta(days=90)
        month = start.replace(day=1)
        while month < end:
            await conn.execute("SELECT meterflow_ensure_event_partition($1)", month)
            month = (month + timedelta(days=32)).replace(day=1)
        rng = random.Random(7)
        span_ms = int((end - start).total_seconds() * 1000)
        start_ms = int(start.timestamp() * 1000)
        names = [m for m, _ in METERS]
        account = uuid.UUID(account_id)
        columns = [c for c in EVENT_COPY_COLUMNS if c != "seq"]  # seq: its default
        chunk = 500_000
        began = time.perf_counter()
        for offset in range(0, events, chunk):
            rows = []
            for i in range(offset, min(offset + chunk, events)):
                meter = names[i % 5]
                when = start_ms + rng.randrange(span_ms)
                dims = json.dumps(
                    {
                        "region": ("us", "eu", "ap")[i % 3],
                        "tier": ("free", "pro")[i % 2],
                        "endpoint": f"/v{i % 4}",
                    }
                )
                uid = f"e{i}"
                rows.append(
                    (
                        account,
                        datetime.fromtimestamp(when / 1000, UTC),
                        meter_ids[meter],
                        f"customer-{rng.randrange(1000)}",
                        Decimal(rng.randrange(1, 100)),
                        uid,
                        "u:" + uid,
                        dims,
                        "{}",
                    )
                )
            await conn.copy_records_to_table("meter_events", records=rows, columns=columns)
            print(
                f"  seeded {min(offset + chunk, events):,} events "
                f"({time.perf_counter() - began:.0f} s)",
                flush=True,
            )
        return {k: str(v) for k, v in meter_ids.items()}
    finally:
        await conn.close()


async def admin_key(url: str, account_id: str) -> str:
    from meterflow.models import ApiKeyScope
    from meterflow.services import accounts

    engine = create_engine(url, pool_size=1)
    async with unit_of_work(create_session_factory(engine)) as session:
        issued = await accounts.issue_api_key(
            session, account_id=uuid.UUID(account_id), name="bench", scope=ApiKeyScope.ADMIN
        )
    await engine.dispose()
    return issued.secret


async def time_query(
    client: httpx.AsyncClient, key: str, variables: dict, runs: int
) -> tuple[list[float], dict]:  # type: ignore[type-arg]
    times, last = [], {}
    for _ in range(runs):
        began = time.perf_counter()
        last = await graphql(client, key, USAGE, {"input": variables})
        times.append((time.perf_counter() - began) * 1000)
    return times, last


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--reuse", action="store_true", help="skip seeding: reuse the last run")
    args = parser.parse_args()

    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    if args.reuse:  # time the queries again over the data an earlier run left
        url = database_url(DATABASE)
        conn = await asyncpg.connect(url)
        account_id = str(await conn.fetchval("SELECT id FROM accounts LIMIT 1"))
        await conn.close()
        key = await admin_key(url, account_id)
    else:
        url = await fresh_database(DATABASE)
        account_id, key = await new_account(url)
    with server(url) as base:
        rollup_seconds = float("nan")
        if not args.reuse:
            await seed(url, account_id, key, base, args.events, end)
            engine = create_engine(url, pool_size=2)
            factory = create_session_factory(engine)
            began = time.perf_counter()
            while True:
                async with unit_of_work(factory) as session:
                    step = await rollups.rollup_account(
                        session, account_id=uuid.UUID(account_id), max_events=500_000
                    )
                if not step.more:
                    break
            rollup_seconds = time.perf_counter() - began
            await engine.dispose()
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        # Fresh statistics after a bulk load (autovacuum would get there on its own).
        await conn.execute("ANALYZE")
        rollup_rows = await conn.fetchval("SELECT count(*) FROM usage_rollups")
        await conn.close()

        month_end = end.replace(day=1, hour=0)
        month_start = (month_end - timedelta(days=1)).replace(day=1)
        window = {
            "meterApiName": "api-calls",
            "startTime": month_start.isoformat(),
            "endTime": month_end.isoformat(),
        }
        async with httpx.AsyncClient(base_url=base, timeout=120) as client:
            await time_query(client, key, {**window, "timeGroupingInterval": "DAY"}, 3)
            one, one_answer = await time_query(
                client,
                key,
                {
                    **window,
                    "timeGroupingInterval": "DAY",
                    "filter": {"customerId": ["customer-17"]},
                },
                50,
            )
            everyone, all_answer = await time_query(
                client,
                key,
                {**window, "timeGroupingInterval": "MONTH", "groupBy": ["customerId"]},
                20,
            )

    print(
        f"\nusage query benchmark: {args.events:,} events, 1,000 customers, 5 meters, "
        "3 dimensions, 90 days"
    )
    print(
        f"rollup of all events: {rollup_seconds:.1f} s "
        f"({args.events / rollup_seconds:,.0f} events/s), {rollup_rows:,} rollup rows"
    )
    print(
        f"one customer, one month by DAY:    p50 {statistics.median(one):6.1f} ms  "
        f"p95 {percentile(one, 95):6.1f} ms  ({len(one_answer['usage']['groups'][0]['values'])}"
        " days)"
    )
    print(
        f"all customers, one month by customer: p50 {statistics.median(everyone):6.1f} ms  "
        f"p95 {percentile(everyone, 95):6.1f} ms  ({len(all_answer['usage']['groups'])} groups)"
    )


if __name__ == "__main__":
    asyncio.run(main())
