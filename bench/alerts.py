"""Alert latency: from the crossing event's ingest being answered to the webhook arriving.

    .venv/bin/python bench/alerts.py [--probes 40] [--rate 2000]

One API process, one worker, a local webhook receiver. Background load goes to another meter;
each probe is a new customer whose first event crosses the rule's threshold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
from common import (
    InFlight,
    fresh_database,
    graphql,
    load_events,
    new_account,
    paced,
    percentile,
    receiver,
    server,
    start_worker,
)

DATABASE = "meterflow_bench_alerts"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--rate", type=int, default=2000)
    args = parser.parse_args()

    url = await fresh_database(DATABASE)
    _, key = await new_account(url)
    worker = start_worker(url)
    hook, arrivals = receiver(lambda body: body["data"]["customerId"])
    answered: dict[str, float] = {}
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    try:
        with server(url) as base:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                for meter in ("load", "probe"):
                    await graphql(
                        client,
                        key,
                        f"""mutation {{ createMeter(input: {{
                        meterApiName: "{meter}", meterType: SUM}}) {{ __typename }} }}""",
                    )
                await graphql(
                    client,
                    key,
                    """mutation($t: String!) { createAlertRule(input: {
                    name: "first use", subject: USAGE, meterApiName: "probe",
                    condition: GREATER_THAN, threshold: "0", range: DAY,
                    channels: [{type: WEBHOOK, target: $t}]}) { __typename } }""",
                    {"t": f"http://127.0.0.1:{hook.server_address[1]}/hook"},
                )
                batch = 100
                interval = batch / args.rate
                start = time.perf_counter()
                probe_at, probe_index, sent = start + 1, 0, 0
                in_flight = InFlight()

                async def send(events: list[dict], probe: str | None) -> None:  # type: ignore[type-arg]
                    response = await client.post(
                        "/ingest", content=json.dumps(events), headers=headers
                    )
                    assert response.status_code == 200, response.text
                    if probe:
                        answered[probe] = time.perf_counter()

                async for tick in paced(interval, lambda _: True):
                    if probe_index >= args.probes:
                        break
                    events = load_events("load", batch, customers=100, prefix="c")
                    probe = None
                    if tick >= probe_at:
                        probe = f"probe-{probe_index}"
                        probe_index += 1
                        probe_at += 0.5
                        probe_event = load_events("probe", 1, customers=1, prefix=probe)[0]
                        events.append({**probe_event, "customerId": probe})
                    in_flight.spawn(send(events, probe))
                    sent += len(events)
                await in_flight.drain()
                elapsed = time.perf_counter() - start
                deadline = time.perf_counter() + 30
                # The receiver fills `arrivals` from its own thread: poll it.
                while len(arrivals) < len(answered) and time.perf_counter() < deadline:  # noqa: ASYNC110
                    await asyncio.sleep(0.1)
    finally:
        hook.shutdown()
        worker.terminate()
        worker.wait(15)

    ms = [(arrivals[c] - answered[c]) * 1000 for c in answered if c in arrivals]
    print(
        f"\nalerts: {sent:,} events in {elapsed:.1f} s ({sent / elapsed:,.0f}/s); "
        f"{len(ms)}/{len(answered)} webhooks arrived"
    )
    print(
        f"crossing event answered → webhook arrived: p50 {percentile(ms, 50):.0f} ms  "
        f"p95 {percentile(ms, 95):.0f} ms  max {max(ms):.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
