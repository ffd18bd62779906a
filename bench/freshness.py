"""Time from an accepted ingest to the event being visible in `usage`, under steady load.

    .venv/bin/python bench/freshness.py [--rate 5000] [--seconds 30]

One API process and one worker process. The load is REST batches of 250 events; among them,
every 0.25 s, a probe event for a customer of its own. A probe's latency runs from its ingest
request being answered (200) to the usage query (filtered to that customer) showing it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import httpx
from common import (
    InFlight,
    fresh_database,
    graphql,
    load_events,
    new_account,
    paced,
    percentile,
    server,
    start_worker,
)

DATABASE = "meterflow_bench_freshness"
USAGE = """query($input: UsageQueryInput!) { usage(input: $input) { groups { total } } }"""


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=5000, help="events per second")
    parser.add_argument("--seconds", type=float, default=30)
    args = parser.parse_args()

    url = await fresh_database(DATABASE)
    _, key = await new_account(url)
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    worker = start_worker(url)
    latencies: list[float] = []
    sent = 0
    try:
        with server(url) as base:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                await graphql(
                    client,
                    key,
                    """mutation { createMeter(input: {
                    meterApiName: "calls", meterType: SUM, dimensions: ["region"]})
                    { __typename } }""",
                )
                await graphql(
                    client, key, 'mutation { activateMeter(meterApiName: "calls") { __typename } }'
                )
                batch = 250
                interval = batch / args.rate
                probes: list[asyncio.Task[None]] = []
                start = time.perf_counter()
                deadline = start + args.seconds
                next_probe = start

                async def probe(customer: str, accepted_at: float) -> None:
                    query = {
                        "input": {
                            "meterApiName": "calls",
                            "timeGroupingInterval": "DAY",
                            "startTime": time.strftime(
                                "%Y-%m-%dT00:00:00+00:00", time.gmtime(time.time() - 86400)
                            ),
                            "endTime": time.strftime(
                                "%Y-%m-%dT00:00:00+00:00", time.gmtime(time.time() + 86400)
                            ),
                            "filter": {"customerId": [customer]},
                        }
                    }
                    while time.perf_counter() - accepted_at < 30:
                        data = await graphql(client, key, USAGE, query)
                        if data["usage"]["groups"] and float(data["usage"]["groups"][0]["total"]):
                            latencies.append(time.perf_counter() - accepted_at)
                            return
                        await asyncio.sleep(0.01)

                async def send(events: list[dict], probe_customer: str | None) -> None:  # type: ignore[type-arg]
                    response = await client.post(
                        "/ingest", content=json.dumps(events), headers=headers
                    )
                    accepted = time.perf_counter()
                    assert response.status_code == 200, response.text
                    if probe_customer:
                        probes.append(asyncio.create_task(probe(probe_customer, accepted)))

                in_flight = InFlight()
                async for tick in paced(interval, lambda t: t < deadline):
                    events = load_events(
                        "calls", batch, customers=500, offset=sent, dimensions={"region": "eu"}
                    )
                    probe_customer = None
                    if tick >= next_probe:
                        probe_customer = f"probe-{uuid.uuid4().hex[:8]}"
                        events[0]["customerId"] = probe_customer
                        next_probe += 0.25
                    in_flight.spawn(send(events, probe_customer))
                    sent += batch
                await in_flight.drain()
                elapsed = time.perf_counter() - start
                await asyncio.gather(*probes)
    finally:
        worker.terminate()
        worker.wait(15)

    print(
        f"\nfreshness: {sent:,} events in {elapsed:.1f} s = {sent / elapsed:,.0f} events/s "
        f"(target rate {args.rate:,}); {len(latencies)} probes"
    )
    print(
        f"ingest answered → visible in usage: p50 {percentile(latencies, 50) * 1000:.0f} ms  "
        f"p95 {percentile(latencies, 95) * 1000:.0f} ms  "
        f"p99 {percentile(latencies, 99) * 1000:.0f} ms  max {max(latencies) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
