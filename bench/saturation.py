"""Ingest at the maximum, with the rollup beside it: does usage keep up, and how fast is the
rollup against the ingest that feeds it?

    .venv/bin/python bench/saturation.py [--seconds 60] [--workers 1] [--api-workers 1]
                                         [--meters 1] [--spread-hours 24] [--backlog-seconds 20]

REST batches of 1,000 events, 4 requests in flight, as fast as the API answers. Two phases in
one run, on one database:

1. backlog: `--backlog-seconds` of ingest with no worker running, then `--workers` workers
   start and roll the backlog up alone: the rollup's rate against the ingest rate of the same
   phase (the issue's target: at least 2x);
2. saturation: `--seconds` of ingest with the workers running. Every second it reads how many
   events the rollup has turned into usage (the daily rows' counts). Prints the ingest rate,
   the rollup rate while ingesting, how long after the last answer usage was complete (target:
   within 10 s), and the API's resident memory (target: at most 300 MB).

The events are bench/ingest.py's (1,000 customers, 15 dimension sets), spread over
`--meters` SUM meters and over the last `--spread-hours` hours: with 24 hours nearly every
event is a customer-hour-dimensions group of its own (the rollup's worst case); live traffic
is closer to `--spread-hours 1`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import httpx
from common import (
    SERVER_PIDS,
    fresh_database,
    graphql,
    new_account,
    rss_bytes,
    server,
    start_worker,
)
from ingest import make_events
from sqlalchemy import text

from meterflow.db import create_engine

DATABASE = "meterflow_bench_saturation"


def templates(meters: list[str], spread_hours: float, now_ms: int) -> list[bytes]:
    """50 batch bodies; each send gives their uniqueIds a fresh prefix."""
    spread_ms = max(int(spread_hours * 3_600_000), 1)
    bodies = []
    for b in range(50):
        events = make_events(1000, now_ms)
        for i, event in enumerate(events):
            n = b * 1000 + i
            event["meterApiName"] = meters[n % len(meters)]
            event["meterTimeInMillis"] = now_ms - (n * 7919) % spread_ms
        bodies.append(json.dumps(events).encode())
    return bodies


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--meters", type=int, default=1)
    parser.add_argument("--spread-hours", type=float, default=24)
    parser.add_argument("--backlog-seconds", type=float, default=20)
    args = parser.parse_args()
    url = await fresh_database(DATABASE)
    account_id, key = await new_account(url)
    engine = create_engine(url, pool_size=1)
    workers: list[Any] = []
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    meters = ["api-calls"] + [f"api-calls-{n}" for n in range(2, args.meters + 1)]
    sent = 0

    async def rolled() -> int:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT coalesce(sum(count), 0) FROM usage_daily WHERE account_id = :a"),
                {"a": account_id},
            )
            return int(found.scalar_one())

    async def ingest_for(
        client: httpx.AsyncClient, bodies: list[bytes], seconds: float, during: Any = None
    ) -> tuple[int, float]:
        """Send at the maximum for `seconds`: (events accepted, seconds to the last answer)."""
        accepted = 0
        start = time.perf_counter()
        deadline = start + seconds

        async def sender() -> None:
            nonlocal accepted, sent
            while time.perf_counter() < deadline:
                body = bodies[sent % len(bodies)].replace(
                    b'"uniqueId": "', f'"uniqueId": "{sent}-'.encode()
                )
                sent += 1
                response = await client.post("/ingest", content=body, headers=headers)
                assert response.status_code == 200, response.text[:200]
                accepted += int(response.text.split(" ", 1)[0])

        await asyncio.gather(
            *([during(start, deadline)] if during else []),
            *(sender() for _ in range(args.concurrency)),
        )
        return accepted, time.perf_counter() - start

    async def until_rolled(total: int, since: float) -> tuple[int, float]:
        while (done := await rolled()) < total:
            if time.perf_counter() - since > 300:
                break
            await asyncio.sleep(0.05)
        return done, time.perf_counter() - since

    samples: list[tuple[float, int]] = []
    peak_rss = 0
    try:
        with server(url, workers=args.api_workers) as base:
            pid = SERVER_PIDS[base]
            async with httpx.AsyncClient(base_url=base, timeout=120) as client:
                for name in meters:
                    await graphql(
                        client,
                        key,
                        f"""mutation {{ createMeter(input: {{meterApiName: "{name}",
                        meterType: SUM, dimensions: ["region", "endpoint"]}})
                        {{ __typename }} }}""",
                    )
                    await graphql(
                        client,
                        key,
                        f'mutation {{ activateMeter(meterApiName: "{name}") {{ __typename }} }}',
                    )
                bodies = templates(meters, args.spread_hours, int(time.time() * 1000))

                backlog, backlog_seconds = 0, 0.0
                if args.backlog_seconds > 0:
                    backlog, backlog_seconds = await ingest_for(
                        client, bodies, args.backlog_seconds
                    )
                workers = [start_worker(url) for _ in range(args.workers)]
                drain_start = time.perf_counter()
                drained, drain_seconds = await until_rolled(backlog, drain_start)

                async def sampler(start: float, deadline: float) -> None:
                    nonlocal peak_rss
                    while time.perf_counter() < deadline:
                        samples.append((time.perf_counter() - start, await rolled()))
                        peak_rss = max(peak_rss, rss_bytes(pid))
                        await asyncio.sleep(1)

                accepted, ingest_seconds = await ingest_for(client, bodies, args.seconds, sampler)
                last_answer = time.perf_counter()
                done, caught_up = await until_rolled(backlog + accepted, last_answer)
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(15)
        await engine.dispose()
    during = [s for s in samples if s[0] >= 5]  # after the first seconds of warm-up
    rollup_rate = (
        (during[-1][1] - during[0][1]) / (during[-1][0] - during[0][0]) if len(during) > 1 else 0
    )
    print(
        f"\nsaturation: REST ingest at the maximum ({args.concurrency} x 1,000-event batches in "
        f"flight), {args.api_workers} API process(es), {args.workers} worker(s), "
        f"{len(meters)} meter(s), event times spread over {args.spread_hours:g} h"
    )
    if backlog:
        ingest_rate = backlog / backlog_seconds
        drain_rate = drained / drain_seconds
        print(
            f"backlog: {backlog:,} events ingested in {backlog_seconds:.1f} s "
            f"({ingest_rate:,.0f} events/s) with no worker; rolled up alone in "
            f"{drain_seconds:.1f} s: {drain_rate:,.0f} events/s = {drain_rate / ingest_rate:.2f} "
            "x the ingest rate (target >= 2)"
        )
    print(f"ingest: {accepted:,} events, {accepted / ingest_seconds:,.0f} events/s")
    print(f"rollup while ingesting: {rollup_rate:,.0f} events/s")
    print(
        f"usage complete {caught_up:.1f} s after the last answer (target <= 10 s); "
        f"{done - backlog:,} of {accepted:,} events rolled up"
    )
    print(f"API resident memory, peak: {peak_rss / 2**20:.0f} MB (target <= 300 MB)")


if __name__ == "__main__":
    asyncio.run(main())
