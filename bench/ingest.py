"""Sustained ingestion through REST and GraphQL against one API process, and the raw baseline.

    .venv/bin/python bench/ingest.py [--events 200000] [--batch 1000] [--concurrency 4]
                                     [--rounds 3] [--api-workers 1]

Prints events/s and request latency for each path, and the ratio of each to an asyncpg COPY of
the same rows into a scratch copy of the events table with its indexes, measured in the same
round (REST, GraphQL, then COPY, on fresh events); then the median ratio of the rounds. Uses
PostgreSQL and Redis on 127.0.0.1 (override with METERFLOW_BENCH_ADMIN_URL and
METERFLOW_BENCH_REDIS_URL).
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
from typing import Any

import asyncpg
import httpx
from common import (
    EVENT_COPY_COLUMNS,
    database_url,
    fresh_database,
    graphql,
    new_account,
    server,
    summary,
)

DATABASE = "meterflow_bench_ingest"
INGEST_GRAPHQL = """mutation($events: [MeterEventInput!]!) {
  ingestMeterEvents(events: $events) { accepted rejected } }"""


def make_events(count: int, now_ms: int) -> list[dict]:  # type: ignore[type-arg]
    return [
        {
            "meterApiName": "api-calls",
            "customerId": f"customer-{i % 1000}",
            "meterValue": (i % 7) + 1,
            "meterTimeInMillis": now_ms - (i % 86_400) * 1000,
            "uniqueId": str(uuid.uuid4()),
            "dimensions": {"region": ("us", "eu", "ap")[i % 3], "endpoint": f"/v{i % 5}"},
        }
        for i in range(count)
    ]


async def drive(
    requests: list[tuple[str, bytes]], base: str, headers: dict[str, str], concurrency: int
) -> tuple[float, list[float], int]:
    """Send pre-encoded bodies with `concurrency` requests in flight; return time, latencies."""
    latencies: list[float] = []
    failures = 0
    queue = list(reversed(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while queue:
            path, body = queue.pop()
            started = time.perf_counter()
            response = await client.post(path, content=body, headers=headers)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200 or b'"errors"' in response.content[:20]:
                failures += 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=120, limits=limits) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return elapsed, latencies, failures


async def copy_baseline(
    url: str, account_id: str, meter_id: uuid.UUID, events: list[dict], *, filled: bool
) -> float:  # type: ignore[type-arg]
    """asyncpg COPY of the same rows into a scratch copy of meter_events with its indexes:
    empty, or (`filled`) holding first every event stored so far, as meter_events does when
    the paths are measured (its indexes have grown round by round; an empty table's have not).
    """
    dsn = url.replace("postgresql+asyncpg://", "postgresql://")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        await conn.execute("CREATE TABLE bench_copy (LIKE meter_events INCLUDING ALL)")
        if filled:
            await conn.execute("INSERT INTO bench_copy SELECT * FROM meter_events")
            await conn.execute("VACUUM ANALYZE bench_copy")
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        rows = [
            (
                uuid.UUID(account_id),
                epoch + timedelta(milliseconds=e["meterTimeInMillis"]),
                10**15 + seq,  # past any stored event's sequence number
                meter_id,
                e["customerId"],
                Decimal(e["meterValue"]),
                e["uniqueId"],
                "u:" + e["uniqueId"],
                json.dumps(e["dimensions"]),
                json.dumps(e),
            )
            for seq, e in enumerate(events, 1)
        ]
        columns = EVENT_COPY_COLUMNS
        started = time.perf_counter()
        for start in range(0, len(rows), 1000):
            await conn.copy_records_to_table(
                "bench_copy", records=rows[start : start + 1000], columns=columns
            )
        return time.perf_counter() - started
    finally:
        await conn.execute("DROP TABLE IF EXISTS bench_copy")
        await conn.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--only", choices=["rest", "graphql"], help="run one path (profiling)")
    parser.add_argument("--api-workers", type=int, default=1, help="serve --workers N")
    parser.add_argument("--rounds", type=int, default=3, help="REST, GraphQL and COPY, each")
    args = parser.parse_args()

    url = await fresh_database(DATABASE)
    account_id, key = await new_account(url)
    now_ms = int(time.time() * 1000)

    def batches(events: list[dict]) -> list[list[dict]]:  # type: ignore[type-arg]
        return [events[i : i + args.batch] for i in range(0, len(events), args.batch)]

    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    skipped = (float("nan"), [float("nan")], 0)
    rounds: list[tuple[Any, Any, float]] = []
    with server(url, workers=args.api_workers) as base:
        async with httpx.AsyncClient(base_url=base) as client:
            await graphql(
                client,
                key,
                """mutation { createMeter(input: {meterApiName: "api-calls",
                meterType: SUM, dimensions: ["region", "endpoint"]}) { __typename } }""",
            )
            await graphql(
                client, key, 'mutation { activateMeter(meterApiName: "api-calls") { __typename } }'
            )
            # Warm-up: customers get created, partitions made, caches filled.
            await client.post(
                "/ingest", content=json.dumps(make_events(2000, now_ms)), headers=headers
            )
        meter_id = await _meter_id()
        # Each round: the three ways on fresh events, one after another, so that each ratio
        # compares paths under the same machine conditions; the median round is the figure.
        for _ in range(args.rounds):
            rest_requests = [
                ("/ingest", json.dumps(b).encode())
                for b in batches(make_events(args.events, now_ms))
            ]
            gql_requests = [
                (
                    "/graphql",
                    json.dumps({"query": INGEST_GRAPHQL, "variables": {"events": b}}).encode(),
                )
                for b in batches(make_events(args.events, now_ms))
            ]
            rest = (
                skipped
                if args.only == "graphql"
                else await drive(rest_requests, base, headers, args.concurrency)
            )
            gql = (
                skipped
                if args.only == "rest"
                else await drive(gql_requests, base, headers, args.concurrency)
            )
            empty, filled = [
                await copy_baseline(
                    url, account_id, meter_id, make_events(args.events, now_ms), filled=full
                )
                for full in (False, True)
            ]
            rounds.append((rest, gql, args.events / empty, args.events / filled))

    conn = await asyncpg.connect(database_url(DATABASE))
    stored = await conn.fetchval("SELECT count(*) FROM meter_events")
    await conn.close()
    print(
        f"\ningest benchmark: {args.events:,} events per path and round, {args.rounds} rounds, "
        f"batches of {args.batch}, {args.concurrency} requests in flight, "
        f"{args.api_workers} API process(es)"
    )
    print(
        f"{'round':<7}{'path':<10}{'events/s':>12}{'vs COPY':>9}{'vs COPY*':>10}"
        "   latency per request"
    )
    ratios: dict[str, list[float]] = {"REST": [], "GraphQL": [], "REST*": [], "GraphQL*": []}
    for number, (rest, gql, empty, filled) in enumerate(rounds, 1):
        for name, (elapsed, latencies, failures) in (("REST", rest), ("GraphQL", gql)):
            rate = args.events / elapsed
            ratios[name].append(rate / empty)
            ratios[name + "*"].append(rate / filled)
            print(
                f"{number:<7}{name:<10}{rate:>12,.0f}{rate / empty:>9.2f}{rate / filled:>10.2f}"
                f"   {summary(latencies)}" + (f"   FAILED REQUESTS: {failures}" if failures else "")
            )
        print(
            f"{number:<7}{'COPY':<10}{empty:>12,.0f}{1:>9.2f}{'':>10}   "
            "(asyncpg COPY, 1000-row chunks, one connection, into an empty copy of the table)"
        )
        print(
            f"{number:<7}{'COPY*':<10}{filled:>12,.0f}{'':>9}{1:>10.2f}   "
            "(the same, into a copy holding every event stored so far)"
        )
    for name, measured in ratios.items():
        print(
            f"median {name} vs COPY{'*' if name.endswith('*') else ''}: "
            f"{statistics.median(measured):.2f}"
        )
    expected = 2000 + args.rounds * args.events * (1 if args.only else 2)
    print(f"stored events: {stored:,} (expected {expected:,})")


async def _meter_id() -> uuid.UUID:
    conn = await asyncpg.connect(database_url(DATABASE))
    try:
        meter_id: uuid.UUID = await conn.fetchval(
            "SELECT id FROM meters WHERE meter_api_name = 'api-calls'"
        )
        return meter_id
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(main())
