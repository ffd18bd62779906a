"""The ingest write path alone, four ways, on the same rows (no HTTP, no parsing):

- texts: what ingestion runs today (services/ingestion.INSERT_EVENTS), one statement that
  claims identities and inserts the fresh events, its columns bound as joined texts that
  PostgreSQL splits (the identities as an array);
- arrays: the same claim-and-insert binding eight arrays (what ran until 2026-12-05);
- staging: COPY the batch into a temporary table, then the arrays' claim-and-insert reading it;
- COPY: the baseline of bench/ingest.py, a COPY into a copy of meter_events with its indexes
  (one table, no dedup).

    .venv/bin/python bench/write_paths.py [--events 100000] [--batch 1000] [--connections 1]

Each batch is one transaction, like a request. Prints events/s for each.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from common import EVENT_COPY_COLUMNS, fresh_database, new_account

from meterflow.services.ingestion import INSERT_EVENTS, EventColumns, _joined

DATABASE = "meterflow_bench_write"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

STAGING = """CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
    n bigint, meter_id uuid, customer_id text, identity text, event_time timestamptz,
    value numeric, unique_id text, dimensions jsonb, raw json) ON COMMIT DELETE ROWS"""
# The statement ingestion ran until 2026-12-05: eight arrays bound by asyncpg, rows matched back
# to their claimed identities by (meter_id, identity). Kept to measure against.
ARRAY_FORM = """
WITH input AS (
    SELECT nextval('meter_event_seq') AS seq, t.*
    FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::numeric[],
                $7::text[], $8::jsonb[], $9::json[]) WITH ORDINALITY
         AS t(meter_id, customer_id, identity, event_time, value, unique_id, dimensions, raw, n)
), fresh AS (
    INSERT INTO meter_event_identities (account_id, meter_id, identity, event_time, seq)
    SELECT $1, meter_id, identity, event_time, seq FROM input
    ORDER BY meter_id, identity
    ON CONFLICT DO NOTHING
    RETURNING meter_id, identity
), inserted AS (
    INSERT INTO meter_events (account_id, seq, meter_id, customer_id, identity, event_time,
                              value, unique_id, dimensions, raw)
    SELECT $1, i.seq, i.meter_id, i.customer_id, i.identity, i.event_time, i.value,
           i.unique_id, i.dimensions, i.raw
    FROM input i JOIN fresh f ON f.meter_id = i.meter_id AND f.identity = i.identity
    RETURNING seq
)
SELECT array_agg(i.n) FROM inserted JOIN input i USING (seq)
"""
FROM_STAGING = ARRAY_FORM.replace(
    """SELECT nextval('meter_event_seq') AS seq, t.*
    FROM unnest($2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::numeric[],
                $7::text[], $8::jsonb[], $9::json[]) WITH ORDINALITY
         AS t(meter_id, customer_id, identity, event_time, value, unique_id, dimensions, raw, n)""",
    """SELECT nextval('meter_event_seq') AS seq, s.* FROM ingest_staging s""",
)
COLUMNS = [
    "n",
    "meter_id",
    "customer_id",
    "identity",
    "event_time",
    "value",
    "unique_id",
    "dimensions",
    "raw",
]


def rows(count: int, meter_id: uuid.UUID) -> list[tuple[Any, ...]]:
    now_ms = int(time.time() * 1000)
    out = []
    for i in range(count):
        unique = str(uuid.uuid4())
        dims = {"region": ("us", "eu", "ap")[i % 3], "endpoint": f"/v{i % 5}"}
        millis = now_ms - (i % 86_400) * 1000
        record = {
            "meterApiName": "api-calls",
            "customerId": f"customer-{i % 1000}",
            "meterValue": (i % 7) + 1,
            "meterTimeInMillis": millis,
            "uniqueId": unique,
            "dimensions": dims,
        }
        out.append(
            (
                i % 1000 + 1,
                meter_id,
                f"customer-{i % 1000}",
                "u:" + unique,
                EPOCH + timedelta(milliseconds=millis),
                Decimal((i % 7) + 1),
                unique,
                json.dumps(dims),
                json.dumps(record),
            )
        )
    return out


async def arrays(conn: asyncpg.Connection, account: uuid.UUID, batch: list[Any]) -> None:
    async with conn.transaction():
        await conn.fetchval(
            ARRAY_FORM,
            account,
            *[[r[i] for r in batch] for i in range(1, 9)],
        )


async def texts(conn: asyncpg.Connection, account: uuid.UUID, batch: list[Any]) -> None:
    """What ingestion runs: columns joined into texts (the time as epoch milliseconds)."""
    columns = EventColumns(
        meter_ids=_joined([str(r[1]) for r in batch]),
        customer_ids=_joined([r[2] for r in batch]),
        identities=[r[3] for r in batch],
        millis=_joined([str((r[4] - EPOCH) // timedelta(milliseconds=1)) for r in batch]),
        values=_joined([str(r[5]) for r in batch]),
        dimensions=_joined([r[7] for r in batch]),
        raws=_joined([r[8] for r in batch]),
    )
    async with conn.transaction():
        await conn.fetchval(INSERT_EVENTS, account, *columns.arguments())


async def staging(conn: asyncpg.Connection, account: uuid.UUID, batch: list[Any]) -> None:
    async with conn.transaction():
        await conn.copy_records_to_table("ingest_staging", records=batch, columns=COLUMNS)
        await conn.fetchval(FROM_STAGING, account)


async def copy(conn: asyncpg.Connection, account: uuid.UUID, batch: list[Any]) -> None:
    records = [
        (account, r[4], seq, r[1], r[2], r[5], r[6], r[3], r[7], r[8])
        for seq, r in enumerate(batch, 1 + id(batch) % 10**9 * 1000)
    ]
    async with conn.transaction():
        await conn.copy_records_to_table(
            "bench_copy",
            records=records,
            columns=EVENT_COPY_COLUMNS,
        )


async def run(
    dsn: str, name: str, account: uuid.UUID, batches: list[list[Any]], connections: int
) -> float:
    pool = [await asyncpg.connect(dsn) for _ in range(connections)]
    for conn in pool:
        await conn.execute(STAGING)
    queue = list(reversed(batches))
    way = {"texts": texts, "arrays": arrays, "staging": staging, "COPY": copy}[name]

    async def drain(conn: asyncpg.Connection) -> None:
        while queue:
            await way(conn, account, queue.pop())

    started = time.perf_counter()
    await asyncio.gather(*(drain(c) for c in pool))
    elapsed = time.perf_counter() - started
    for conn in pool:
        await conn.close()
    return sum(len(b) for b in batches) / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=1)
    args = parser.parse_args()
    url = await fresh_database(DATABASE)
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    account_text, _ = await new_account(url)
    account = uuid.UUID(account_text)
    conn = await asyncpg.connect(dsn)
    meter_id = uuid.uuid4()
    await conn.execute(
        "SELECT meterflow_ensure_event_partition(t) FROM unnest($1::timestamptz[]) AS t",
        [datetime.now(UTC) - timedelta(days=1), datetime.now(UTC)],
    )
    await conn.execute("CREATE TABLE bench_copy (LIKE meter_events INCLUDING ALL)")
    await conn.close()
    rates = {}
    for name in ("texts", "arrays", "staging", "COPY") * 2:
        data = rows(args.events, meter_id)
        batches = [data[i : i + args.batch] for i in range(0, len(data), args.batch)]
        rate = await run(dsn, name, account, batches, args.connections)
        rates.setdefault(name, []).append(rate)
    print(
        f"write paths: {args.events:,} events a run, batches of {args.batch}, "
        f"{args.connections} connection(s), two runs each"
    )
    for name, measured in rates.items():
        shown = " / ".join(f"{r:,.0f}" for r in measured)
        print(f"{name:<8} {shown} events/s   vs COPY {max(measured) / max(rates['COPY']):.2f}")


if __name__ == "__main__":
    asyncio.run(main())
