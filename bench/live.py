"""Live updates: time from an ingest request being answered to the matching invoiceUpdated
message arriving, under steady load; and what idle subscriptions cost one API process.

    .venv/bin/python bench/live.py [--rate 5000] [--seconds 20] [--idle 2000]

One API process and one worker process. Probe customers each get one probe event during the
load; their subscriptions' first update after the initial state is that probe.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from contextlib import AsyncExitStack

import httpx
import psutil
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
from httpx_ws import aconnect_ws

DATABASE = "meterflow_bench_live"
INVOICE_SUB = "subscription($c: String!) { invoiceUpdated(customerId: $c) { total } }"
WALLET_SUB = "subscription($c: String!) { walletUpdated(customerId: $c) { balance } }"


async def open_ws(stack: AsyncExitStack, client: httpx.AsyncClient, key: str):  # type: ignore[no-untyped-def]
    ws = await stack.enter_async_context(
        aconnect_ws(
            "/graphql",
            client,
            subprotocols=["graphql-transport-ws"],
            keepalive_ping_interval_seconds=None,
        )
    )
    await ws.send_text(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
    assert json.loads(await ws.receive_text(timeout=30))["type"] == "connection_ack"
    return ws


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--probes", type=int, default=60)
    parser.add_argument("--idle", type=int, default=2000)
    args = parser.parse_args()

    url = await fresh_database(DATABASE)
    _, key = await new_account(url)
    worker = start_worker(url)
    headers = {"X-API-Key": key, "Content-Type": "application/json"}
    latencies: list[float] = []
    try:
        with server(url) as base:
            api = next(
                p
                for p in psutil.process_iter(["cmdline"])
                if "serve" in " ".join(p.info["cmdline"] or [])
                and base.rsplit(":", 1)[1] in " ".join(p.info["cmdline"] or [])
            )
            async with (
                httpx.AsyncClient(base_url=base, timeout=60) as client,
                AsyncExitStack() as stack,
            ):
                await graphql(
                    client,
                    key,
                    """mutation { createMeter(input: {meterApiName:
                    "calls", meterType: SUM}) { __typename } }""",
                )
                plan = (
                    await graphql(
                        client,
                        key,
                        """mutation { createPricingPlan(input: {
                    name: "p", billingPeriod: {interval: MONTH}, isDefault: true, items: [{
                    meterApiName: "calls", priceModel: {type: "per_unit", unitPrice: "0.001"}}]})
                    { ... on PricingPlan { id } } }""",
                    )
                )["createPricingPlan"]["id"]
                await graphql(
                    client,
                    key,
                    "mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }",
                    {"id": plan},
                )
                probes = [f"probe-{i}" for i in range(args.probes)]
                for customer in probes:  # created now, so they join the default plan
                    await graphql(
                        client,
                        key,
                        "mutation($c: String!) { createCustomer(input: "
                        "{customerId: $c}) { __typename } }",
                        {"c": customer},
                    )
                arrivals: dict[str, float] = {}
                listeners = []
                for customer in probes:
                    ws = await open_ws(stack, client, key)
                    await ws.send_text(
                        json.dumps(
                            {
                                "id": "1",
                                "type": "subscribe",
                                "payload": {"query": INVOICE_SUB, "variables": {"c": customer}},
                            }
                        )
                    )
                    await ws.receive_text(timeout=30)  # the current state

                    async def listen(ws=ws, customer=customer):  # type: ignore[no-untyped-def]
                        await ws.receive_text(timeout=120)
                        arrivals[customer] = time.perf_counter()

                    listeners.append(asyncio.create_task(listen()))

                answered: dict[str, float] = {}
                batch, sent = 250, 0
                interval = batch / args.rate
                start = time.perf_counter()
                next_probe, probe_index = start + 1, 0
                in_flight = InFlight()

                async def send(events: list[dict], probe: str | None) -> None:  # type: ignore[type-arg]
                    response = await client.post(
                        "/ingest", content=json.dumps(events), headers=headers
                    )
                    assert response.status_code == 200, response.text
                    if probe:
                        answered[probe] = time.perf_counter()

                async for tick in paced(interval, lambda t: t < start + args.seconds):
                    events = load_events("calls", batch, customers=200, offset=sent)
                    probe = None
                    if tick >= next_probe and probe_index < len(probes):
                        probe = probes[probe_index]
                        probe_index += 1
                        events[0]["customerId"] = probe
                        next_probe += (args.seconds - 2) / len(probes)
                    in_flight.spawn(send(events, probe))
                    sent += batch
                await in_flight.drain()
                elapsed = time.perf_counter() - start
                await asyncio.wait(listeners, timeout=30)
                latencies = [arrivals[c] - answered[c] for c in answered if c in arrivals]

                # Idle subscriptions: many per connection, as a dashboard would hold them.
                rss_before = api.memory_info().rss
                per_connection, opened = 100, 0
                while opened < args.idle:
                    ws = await open_ws(stack, client, key)
                    for i in range(min(per_connection, args.idle - opened)):
                        await ws.send_text(
                            json.dumps(
                                {
                                    "id": str(i),
                                    "type": "subscribe",
                                    "payload": {"query": WALLET_SUB, "variables": {"c": "idle"}},
                                }
                            )
                        )
                    for _ in range(min(per_connection, args.idle - opened)):
                        await ws.receive_text(timeout=60)
                    opened += min(per_connection, args.idle - opened)
                await asyncio.sleep(1)
                rss_after = api.memory_info().rss
    finally:
        worker.terminate()
        worker.wait(15)

    print(
        f"\nlive: {sent:,} events in {elapsed:.1f} s = {sent / elapsed:,.0f} events/s; "
        f"{len(latencies)}/{len(answered)} probes received"
    )
    ms = [x * 1000 for x in latencies]
    print(
        f"ingest answered → invoiceUpdated arrived: p50 {percentile(ms, 50):.0f} ms  "
        f"p95 {percentile(ms, 95):.0f} ms  p99 {percentile(ms, 99):.0f} ms  "
        f"max {max(ms):.0f} ms"
    )
    grown = rss_after - rss_before
    print(
        f"{opened:,} idle subscriptions on one API process: RSS +{grown / 2**20:.1f} MiB "
        f"= {grown / opened / 1024:.1f} KiB each"
    )


if __name__ == "__main__":
    asyncio.run(main())
