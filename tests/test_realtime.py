"""Subscriptions over real WebSockets against running servers; customer session tokens."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from httpx_ws import WebSocketDisconnect, aconnect_ws

from tests.client import GraphQLClient, TestAccount
from tests.conftest import PrivateRedis, running_server
from tests.helpers import create_meter, ingest
from tests.ws import connect

INVOICE_SUB = """subscription($c: String!) { invoiceUpdated(customerId: $c) {
    customerId total subtotal status } }"""
WALLET_SUB = """subscription($c: String!) { walletUpdated(customerId: $c) { balance } }"""
EVENTS_SUB = """subscription($m: String) { meterEventsIngested(meterApiName: $m) {
    meterApiName events { uniqueId meterValue } } }"""


@pytest.fixture(scope="module")
def second_server(server_env: dict[str, str]) -> Iterator[str]:
    with running_server(server_env) as base:
        yield base


async def billed_customer(gql: GraphQLClient, customer: str) -> None:
    await create_meter(gql, "calls")
    plan = (
        await gql("""mutation { createPricingPlan(input: {name: "p", billingPeriod:
        {interval: MONTH}, items: [{meterApiName: "calls", priceModel: {type: "per_unit",
        unitPrice: "0.25"}}]}) { ... on PricingPlan { id } } }""")
    )["createPricingPlan"]["id"]
    await gql("mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }", {"id": plan})
    await gql(
        "mutation($c: String!) { createCustomer(input: {customerId: $c}) { __typename } }",
        {"c": customer},
    )
    await gql(
        """mutation($c: String!, $p: ID!) { assignPricingPlan(input: {customerId: $c,
        planId: $p}) { __typename } }""",
        {"c": customer, "p": plan},
    )


def calls(customer: str, count: int) -> list[dict[str, Any]]:
    millis = int(datetime.now(UTC).timestamp() * 1000) - 2000
    return [
        {
            "meterApiName": "calls",
            "customerId": customer,
            "meterValue": 1,
            "meterTimeInMillis": millis,
            "uniqueId": str(uuid.uuid4()),
        }
        for _ in range(count)
    ]


async def until(sub: Any, ready: Any, within: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        data = await sub.data(within=max(0.1, deadline - time.monotonic()))
        if ready(data):
            return data  # type: ignore[no-any-return]


async def session_token(gql: GraphQLClient, customer: str, seconds: int | None = None) -> str:
    result = await gql(
        """mutation($c: String!, $s: Int) { createCustomerSession(customerId: $c,
        expiresInSeconds: $s) { __typename ... on CustomerSession { token expiresAt }
        ... on Error { message } } }""",
        {"c": customer, "s": seconds},
    )
    assert result["createCustomerSession"]["__typename"] == "CustomerSession", result
    return result["createCustomerSession"]["token"]  # type: ignore[no-any-return]


async def test_ingest_then_invoice_updated_arrives(
    server: str, gql: GraphQLClient, account: TestAccount, worker: subprocess.Popen[bytes]
) -> None:
    await billed_customer(gql, "live")
    async with connect(server, {"apiKey": account.admin_key}) as ws:
        await ws.start(INVOICE_SUB, {"c": "live"})
        first = await ws.data()
        assert first["invoiceUpdated"]["total"] == "0.00"  # the current state comes first
        await ingest(gql, calls("live", 8))
        update = await until(ws, lambda d: d["invoiceUpdated"]["total"] == "2.00")
        assert update["invoiceUpdated"]["status"] == "OPEN"


async def test_two_api_processes_fan_out(
    server: str, second_server: str, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "calls")
    async with connect(second_server, {"apiKey": account.admin_key}) as ws:
        await ws.start(EVENTS_SUB, {"m": "calls"})
        batch = calls("c", 3)
        await asyncio.sleep(0.3)  # let B's broker subscribe before A publishes
        await ingest(gql, batch)  # through process A
        data = await until(ws, lambda d: len(d["meterEventsIngested"]["events"]) > 0)
        got = {e["uniqueId"] for e in data["meterEventsIngested"]["events"]}
        while got != {e["uniqueId"] for e in batch}:
            more = await ws.data()
            got |= {e["uniqueId"] for e in more["meterEventsIngested"]["events"]}


async def test_customer_token_sees_only_its_customer(
    server: str, http: httpx.AsyncClient, gql: GraphQLClient, worker: subprocess.Popen[bytes]
) -> None:
    await billed_customer(gql, "mine")
    await gql('mutation { createCustomer(input: {customerId: "theirs"}) { __typename } }')
    await ingest(gql, [*calls("mine", 4), {**calls("theirs", 1)[0], "meterValue": 9}])
    token = await session_token(gql, "mine")

    async def call(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await http.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    own = await call('{ customer(customerId: "mine") { customerId } }')
    assert own == {"data": {"customer": {"customerId": "mine"}}}
    for query in (
        '{ customer(customerId: "theirs") { customerId } }',
        '{ currentInvoice(customerId: "theirs") { total } }',
        '{ wallet(customerId: "theirs") { balance } }',
        '{ invoices(customerId: "theirs") { edges { cursor } } }',
        "{ meters { meterApiName } }",
        "{ apiKeys { prefix } }",
        'mutation { createCustomer(input: {customerId: "x"}) { __typename } }',
    ):
        body = await call(query)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (query, body)
    start = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    usage = await call(
        """query($s: DateTime!, $e: DateTime!) { usage(input: {meterApiName:
        "calls", timeGroupingInterval: DAY, startTime: $s, endTime: $e, groupBy: ["customerId"]})
        { groups { group total } } }""",
        {"s": start.isoformat(), "e": (start + timedelta(days=1)).isoformat()},
    )
    assert all(g["group"] == {"customerId": "mine"} for g in usage["data"]["usage"]["groups"])
    forced = await call(
        """query($s: DateTime!, $e: DateTime!) { usage(input: {meterApiName:
        "calls", timeGroupingInterval: DAY, startTime: $s, endTime: $e,
        filter: {customerId: ["theirs"]}}) { groups { total } } }""",
        {"s": start.isoformat(), "e": (start + timedelta(days=1)).isoformat()},
    )
    assert forced["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    async with connect(server, {"token": token}) as ws:
        await ws.start(INVOICE_SUB, {"c": "mine"})
        assert (await ws.data())["invoiceUpdated"]["customerId"] == "mine"
        await ws.start(INVOICE_SUB, {"c": "theirs"})
        refused = await ws.message()
        assert refused["type"] in ("error", "next")
        errors = refused["payload"] if refused["type"] == "error" else refused["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_expired_forged_and_revoked_tokens_are_refused_with_a_reason(
    server: str, http: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "t"}) { __typename } }')
    expiring = await session_token(gql, "t", seconds=1)
    revoked = await session_token(gql, "t")
    forged = revoked[:-2] + ("aa" if not revoked.endswith("aa") else "bb")
    result = await gql(
        "mutation($t: String!) { revokeCustomerSession(token: $t) { __typename } }", {"t": revoked}
    )
    assert result["revokeCustomerSession"]["__typename"] == "RevokedSession"
    await asyncio.sleep(1.2)
    for token, reason in (
        (expiring, "session token expired"),
        (revoked, "session token revoked"),
        (forged, "invalid session token"),
    ):
        response = await http.post(
            "/graphql",
            json={"query": "{ __typename }"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 401
        assert response.json()["errors"][0]["message"] == reason
        async with (
            httpx.AsyncClient(base_url=server) as client,
            aconnect_ws("/graphql", client, subprotocols=["graphql-transport-ws"]) as ws,
        ):
            await ws.send_text(json.dumps({"type": "connection_init", "payload": {"token": token}}))
            with pytest.raises(WebSocketDisconnect) as closed:
                await ws.receive_text(timeout=10)
            assert closed.value.code == 4403
            assert closed.value.reason == reason


async def test_five_hundred_subscribers_on_one_process(
    server: str, gql: GraphQLClient, account: TestAccount
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "crowd"}) { __typename } }')
    count = 500
    received: list[str] = []
    ready = asyncio.Event()
    started = 0

    async def one() -> None:
        nonlocal started
        async with connect(server, {"apiKey": account.admin_key}) as ws:
            await ws.start(WALLET_SUB, {"c": "crowd"})
            assert (await ws.data(within=60))["walletUpdated"]["balance"] == "0.00"
            started += 1
            if started == count:
                ready.set()
            data = await until(ws, lambda d: d["walletUpdated"]["balance"] != "0.00", within=60)
            received.append(data["walletUpdated"]["balance"])

    tasks = [asyncio.create_task(one()) for _ in range(count)]
    await asyncio.wait_for(ready.wait(), 120)
    await gql("""mutation { grantCredits(input: {customerId: "crowd", amount: "25"})
        { __typename } }""")
    await asyncio.wait_for(asyncio.gather(*tasks), 120)
    assert received == ["25.00"] * count


async def test_redis_restart_subscribers_recover(
    server_env: dict[str, str], private_redis: PrivateRedis, session_factory: Any
) -> None:
    from tests.conftest import make_account

    env = {**server_env, "METERFLOW_REDIS_URL": private_redis.url}
    with running_server(env) as base:
        key = (await make_account(session_factory)).admin_key
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            gql = GraphQLClient(http, key)
            await gql('mutation { createCustomer(input: {customerId: "r"}) { __typename } }')
            async with connect(base, {"apiKey": key}) as ws:
                await ws.start(WALLET_SUB, {"c": "r"})
                assert (await ws.data())["walletUpdated"]["balance"] == "0.00"
                await asyncio.sleep(0.3)
                await gql(
                    'mutation { grantCredits(input: {customerId: "r", amount: "1"}) '
                    "{ __typename } }"
                )
                assert await until(ws, lambda d: d["walletUpdated"]["balance"] == "1.00")

                private_redis.kill()  # Redis goes away...
                # ...a change happens while it is down (its notification is lost)...
                await gql(
                    'mutation { grantCredits(input: {customerId: "r", amount: "2"}) '
                    "{ __typename } }"
                )
                private_redis.start()  # ...and it comes back.
                # The broker reconnects and everyone re-reads: the lost change shows up.
                assert await until(ws, lambda d: d["walletUpdated"]["balance"] == "3.00", within=20)
                await gql(
                    'mutation { grantCredits(input: {customerId: "r", amount: "4"}) '
                    "{ __typename } }"
                )
                assert await until(ws, lambda d: d["walletUpdated"]["balance"] == "7.00")


async def test_amberflo_session_endpoint(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "portal"}) { __typename } }')
    expires = int((datetime.now(UTC) + timedelta(hours=1)).timestamp() * 1000)
    response = await http.post(
        "/session",
        json={"customerId": "portal", "expirationEpochMilliSeconds": expires},
        headers={"X-API-KEY": account.admin_key},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["customerId"] == "portal"
    assert abs(datetime.fromisoformat(body["expiresAt"]).timestamp() * 1000 - expires) < 2000
    who = await http.post(
        "/graphql",
        json={"query": '{ customer(customerId: "portal") { customerId } }'},
        headers={"Authorization": f"Bearer {body['sessionToken']}"},
    )
    assert who.json() == {"data": {"customer": {"customerId": "portal"}}}
    missing = await http.post(
        "/session", json={"customerId": "nobody"}, headers={"X-API-KEY": account.admin_key}
    )
    assert missing.status_code == 404
    assert (await http.post("/session", json={"customerId": "portal"})).status_code == 401
