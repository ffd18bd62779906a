"""Webhook latency: from a close (finalizeInvoice answered) to invoice.finalized arriving at
a subscribed endpoint, with ingest load beside it.

    .venv/bin/python bench/webhooks.py [--probes 40] [--rate 2000]

One API process, one worker, a local receiver subscribed to invoice.finalized. Background load
goes to another meter; every half second one probe customer's invoice is finalized.
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

DATABASE = "meterflow_bench_webhooks"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--rate", type=int, default=2000)
    args = parser.parse_args()

    url = await fresh_database(DATABASE)
    _, key = await new_account(url)
    worker = start_worker(url)
    hook, arrivals = receiver(
        lambda body: body["data"]["invoice"]["id"] if body["type"] == "invoice.finalized" else None
    )
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
                plan = await graphql(
                    client,
                    key,
                    """mutation { createPricingPlan(input: {name: "p", billingPeriod:
                    {interval: MONTH}, items: [{meterApiName: "probe", priceModel:
                    {type: "per_unit", unitPrice: "0.01"}}]}) { ... on PricingPlan { id } } }""",
                )
                plan_id = plan["createPricingPlan"]["id"]
                await graphql(
                    client,
                    key,
                    "mutation($p: ID!) { activatePricingPlan(id: $p) { __typename } }",
                    {"p": plan_id},
                )
                invoices = []
                for i in range(args.probes):
                    await graphql(
                        client,
                        key,
                        """mutation($c: String!, $p: ID!) { a: createCustomer(input:
                        {customerId: $c}) { __typename } b: assignPricingPlan(input:
                        {customerId: $c, planId: $p}) { __typename } }""",
                        {"c": f"probe-{i}", "p": plan_id},
                    )
                    current = await graphql(
                        client,
                        key,
                        "query($c: String!) { currentInvoice(customerId: $c) { id } }",
                        {"c": f"probe-{i}"},
                    )
                    invoices.append(current["currentInvoice"]["id"])
                await graphql(
                    client,
                    key,
                    """mutation($u: String!) { createWebhookEndpoint(input: {url: $u,
                    eventTypes: ["invoice.finalized"]}) { __typename } }""",
                    {"u": f"http://127.0.0.1:{hook.server_address[1]}/hook"},
                )
                batch = 100
                interval = batch / args.rate
                start = time.perf_counter()
                probe_at, probe_index, sent = start + 1, 0, 0
                in_flight = InFlight()

                async def ingest(events: list[dict]) -> None:  # type: ignore[type-arg]
                    response = await client.post(
                        "/ingest", content=json.dumps(events), headers=headers
                    )
                    assert response.status_code == 200, response.text

                async def close(invoice_id: str) -> None:
                    await graphql(
                        client,
                        key,
                        "mutation($id: ID!) { finalizeInvoice(id: $id) { __typename } }",
                        {"id": invoice_id},
                    )
                    answered[invoice_id] = time.perf_counter()

                async for tick in paced(interval, lambda _: True):
                    if probe_index >= args.probes:
                        break
                    in_flight.spawn(ingest(load_events("load", batch, customers=100, prefix="c")))
                    sent += batch
                    if tick >= probe_at:
                        in_flight.spawn(close(invoices[probe_index]))
                        probe_index += 1
                        probe_at += 0.5
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

    ms = [(arrivals[i] - answered[i]) * 1000 for i in answered if i in arrivals]
    print(
        f"\nwebhooks: {sent:,} events in {elapsed:.1f} s ({sent / elapsed:,.0f}/s); "
        f"{len(ms)}/{len(answered)} invoice.finalized arrived"
    )
    print(
        f"finalizeInvoice answered → invoice.finalized arrived: p50 {percentile(ms, 50):.0f} ms  "
        f"p95 {percentile(ms, 95):.0f} ms  max {max(ms):.0f} ms"
    )


if __name__ == "__main__":
    asyncio.run(main())
