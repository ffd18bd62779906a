"""Ingest at the maximum for a minute, with the rollup running beside it: does usage keep up?

    .venv/bin/python bench/saturation.py [--seconds 60] [--workers 1] [--api-workers 1]

REST batches of 1,000 events, 4 requests in flight, as fast as the API answers; `--workers`
rollup workers. Every second it reads how many events the rollup has turned into usage (the
daily rows' counts). Prints the ingest rate, the rollup rate while ingesting, how long after
the last answer usage was complete (target: within 10 s), and the API's resident memory
(target: at most 300 MB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--api-workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    url = await fresh_database(DATABASE)
    account_id, key = await new_account(url)
    engine = create_engine(url, pool_size=1)
    workers = [start_worker(url) for _ in range(args.workers)]
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    accepted = 0
    samples: list[tuple[float, int]] = []
    peak_rss = 0

    async def rolled() -> int:
        async with engine.connect() as conn:
            found = await conn.execute(
                text("SELECT coalesce(sum(count), 0) FROM usage_daily WHERE account_id = :a"),
                {"a": account_id},
            )
            return int(found.scalar_one())

    try:
        with server(url, workers=args.api_workers) as base:
            pid = SERVER_PIDS[base]
            async with httpx.AsyncClient(base_url=base, timeout=120) as client:
                await graphql(
                    client,
                    key,
                    """mutation { createMeter(input: {meterApiName: "api-calls",
                    meterType: SUM, dimensions: ["region", "endpoint"]}) { __typename } }""",
                )
                await graphql(
                    client,
                    key,
                    'mutation { activateMeter(meterApiName: "api-calls") { __typename } }',
                )
                now_ms = int(time.time() * 1000)
                bodies = [json.dumps(make_events(1000, now_ms)).encode() for _ in range(50)]
                start = time.perf_counter()
                deadline = start + args.seconds
                sent = 0

                async def sender() -> None:
                    nonlocal accepted, sent
                    while time.perf_counter() < deadline:
                        # Fresh uniqueIds each time: the bodies are templates.
                        body = bodies[sent % len(bodies)].replace(
                            b'"uniqueId": "', f'"uniqueId": "{sent}-'.encode()
                        )
                        sent += 1
                        response = await client.post("/ingest", content=body, headers=headers)
                        assert response.status_code == 200, response.text[:200]
                        accepted += int(response.text.split(" ", 1)[0])

                async def sampler() -> None:
                    nonlocal peak_rss
                    while time.perf_counter() < deadline:
                        samples.append((time.perf_counter() - start, await rolled()))
                        peak_rss = max(peak_rss, rss_bytes(pid))
                        await asyncio.sleep(1)

                await asyncio.gather(sampler(), *(sender() for _ in range(args.concurrency)))
                last_answer = time.perf_counter()
                ingest_seconds = last_answer - start
                while (done := await rolled()) < accepted:
                    if time.perf_counter() - last_answer > 300:
                        break
                    await asyncio.sleep(0.1)
                caught_up = time.perf_counter() - last_answer
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
        f"\nsaturation: {args.seconds:.0f} s of REST ingest at the maximum "
        f"({args.concurrency} x 1,000-event batches in flight), {args.api_workers} API "
        f"process(es), {args.workers} worker(s)"
    )
    print(f"ingest: {accepted:,} events, {accepted / ingest_seconds:,.0f} events/s")
    print(f"rollup while ingesting: {rollup_rate:,.0f} events/s")
    print(
        f"usage complete {caught_up:.1f} s after the last answer (target <= 10 s); "
        f"{done:,} of {accepted:,} events rolled up"
    )
    print(f"API resident memory, peak: {peak_rss / 2**20:.0f} MB (target <= 300 MB)")


if __name__ == "__main__":
    asyncio.run(main())
