"""Credentials on open WebSockets: every operation re-checks its key or token, and a revoked key,
a revoked token or an expired token closes every socket holding it (4403 + the reason) within
5 s, on every API process, with nothing sent after the revocation."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from httpx_ws import WebSocketDisconnect
from sqlalchemy import text
from wsproto.utilities import LocalProtocolError

from meterflow.db import SessionFactory
from tests.client import GraphQLClient, TestAccount
from tests.conftest import PrivateRedis, make_account, running_server
from tests.helpers import create_meter, event, ingest
from tests.test_realtime import session_token
from tests.ws import Subscription, connect

CLOSE_WITHIN = 5.0
CREATE_KEY = """mutation { createApiKey(input: {name: "temp", scope: ADMIN}) {
    ... on CreatedApiKey { secret apiKey { id } } } }"""
REVOKE_KEY = "mutation($id: ID!) { revokeApiKey(id: $id) { __typename } }"
REVOKE_TOKEN = "mutation($t: String!) { revokeCustomerSession(token: $t) { __typename } }"
USAGE_SUB = """subscription($c: String!) { usageUpdated(customerId: $c, meterApiName: "calls")
    { value } }"""
WALLET_SUB = "subscription($c: String!) { walletUpdated(customerId: $c) { balance } }"


@pytest.fixture(scope="module")
def second_server(server_env: dict[str, str]) -> Iterator[str]:
    with running_server(server_env) as base:
        yield base


async def temporary_admin_key(gql: GraphQLClient) -> tuple[str, str]:
    """A second admin key of the account: (its id, the key)."""
    created = (await gql(CREATE_KEY))["createApiKey"]
    return created["apiKey"]["id"], created["secret"]


async def revoke_key(gql: GraphQLClient, key_id: str) -> None:
    result = await gql(REVOKE_KEY, {"id": key_id})
    assert result["revokeApiKey"]["__typename"] == "ApiKey", result


async def closed(ws: Subscription, within: float) -> tuple[WebSocketDisconnect, list[Any]]:
    """Read until the server closes the socket: the close, and every message before it.
    Fails (TimeoutError) if the socket is still open after `within` seconds."""
    received: list[Any] = []
    deadline = time.monotonic() + within
    while True:
        try:
            received.append(await ws.message(within=max(0.05, deadline - time.monotonic())))
        except WebSocketDisconnect as close:
            return close, received


async def account_name(ws: Subscription) -> str:
    """Run a query over the socket and wait for its end."""
    op = await ws.start("{ account { name } }")
    name = (await ws.data())["account"]["name"]
    assert await ws.message() == {"id": op, "type": "complete"}
    return name  # type: ignore[no-any-return]


async def send_quietly(ws: Subscription, query: str, variables: dict[str, Any]) -> None:
    """Send an operation; the server may already have closed the socket, which is fine."""
    with contextlib.suppress(WebSocketDisconnect, LocalProtocolError):
        await ws.start(query, variables)


@pytest.mark.parametrize(
    "operation",
    [
        'mutation { createCustomer(input: {customerId: "after-revoke"}) { __typename } }',
        'mutation { createApiKey(input: {name: "replacement", scope: ADMIN}) { __typename } }',
        '{ customer(customerId: "after-revoke") { customerId } }',
    ],
    ids=["createCustomer", "createApiKey", "query"],
)
async def test_revoked_key_cannot_act_on_its_open_socket(
    server: str,
    gql: GraphQLClient,
    account: TestAccount,
    session_factory: SessionFactory,
    operation: str,
) -> None:
    key_id, key = await temporary_admin_key(gql)
    async with connect(server, {"apiKey": key}) as ws:
        assert await account_name(ws) == "test"  # the socket works...
        await revoke_key(gql, key_id)  # ...until its key is revoked (by another key)
        await send_quietly(ws, operation, {})
        close, received = await closed(ws, CLOSE_WITHIN)
    assert (close.code, close.reason) == (4403, "API key revoked")
    assert received == []
    async with session_factory() as session:
        customers = await session.scalar(
            text("SELECT count(*) FROM customers WHERE account_id = :a"),
            {"a": account.account_id},
        )
        keys = await session.scalar(
            text("SELECT count(*) FROM api_keys WHERE account_id = :a"),
            {"a": account.account_id},
        )
    assert customers == 0
    assert keys == 2  # the account's key and the revoked one: no replacement was minted


@pytest.mark.parametrize("where", ["same process", "another process"])
async def test_revoking_a_key_closes_its_idle_sockets_everywhere(
    server: str, second_server: str, gql: GraphQLClient, where: str
) -> None:
    key_id, key = await temporary_admin_key(gql)
    _, other_key = await temporary_admin_key(gql)
    base = server if where == "same process" else second_server
    async with (
        connect(base, {"apiKey": key}) as ws,
        connect(base, {"apiKey": key}) as twin,  # every socket holding the key
        connect(base, {"apiKey": other_key}) as bystander,
    ):
        assert await account_name(ws) == "test"
        assert await account_name(bystander) == "test"
        await asyncio.sleep(0.3)  # let the process subscribe to the account's notices
        await revoke_key(gql, key_id)  # always through `server`
        revoked_at = time.monotonic()
        for socket in (ws, twin):
            close, received = await closed(socket, CLOSE_WITHIN)
            assert (close.code, close.reason) == (4403, "API key revoked")
            assert received == []
        assert time.monotonic() - revoked_at < CLOSE_WITHIN
        # A socket of another key of the same account goes on working.
        assert await account_name(bystander) == "test"


async def test_sockets_close_within_seconds_even_when_the_notice_is_lost(
    server_env: dict[str, str],
    private_redis: PrivateRedis,
    session_factory: SessionFactory,
) -> None:
    """Redis down: the revocation notice cannot travel; the periodic sweep still closes it."""
    env = {**server_env, "METERFLOW_REDIS_URL": private_redis.url}
    with running_server(env) as base:
        admin = (await make_account(session_factory)).admin_key
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            gql = GraphQLClient(http, admin)
            key_id, key = await temporary_admin_key(gql)
            async with connect(base, {"apiKey": key}) as ws:
                assert await account_name(ws) == "test"
                private_redis.kill()  # Redis goes away: no notice will be delivered
                await revoke_key(gql, key_id)
                revoked_at = time.monotonic()
                close, _ = await closed(ws, CLOSE_WITHIN)
                assert (close.code, close.reason) == (4403, "API key revoked")
                assert time.monotonic() - revoked_at < CLOSE_WITHIN


@pytest.mark.parametrize("revoked_by", ["revokeCustomerSession", "database"])
async def test_revoked_token_stream_stops_at_once(
    server: str,
    gql: GraphQLClient,
    account: TestAccount,
    session_factory: SessionFactory,
    worker: subprocess.Popen[bytes],
    revoked_by: str,
) -> None:
    """Events keep flowing while the token is revoked. `database`: revoked behind the API's
    back, so no notice is published; the check before each message must stop the stream."""
    await create_meter(gql, "calls")
    await gql('mutation { createCustomer(input: {customerId: "live"}) { __typename } }')
    token = await session_token(gql, "live")
    started = 0  # events whose ingest request was sent: bounds any usage read before...
    bound: int | None = None  # ...the revocation committed (set then)
    stop = asyncio.Event()

    async def keep_ingesting() -> None:
        nonlocal started
        while not stop.is_set():
            started += 1
            await ingest(gql, [event("calls", "live", 1)])
            await asyncio.sleep(0.05)

    async def revoke() -> None:
        if revoked_by == "database":
            async with session_factory() as session, session.begin():
                await session.execute(
                    text("UPDATE customer_sessions SET revoked_at = now() WHERE account_id = :a"),
                    {"a": account.account_id},
                )
        else:
            result = await gql(REVOKE_TOKEN, {"t": token})
            assert result["revokeCustomerSession"]["__typename"] == "RevokedSession"

    async with connect(server, {"token": token}) as ws:
        await ws.start(USAGE_SUB, {"c": "live"})
        assert (await ws.data())["usageUpdated"]["value"] == "0"
        producer = asyncio.create_task(keep_ingesting())
        try:
            while float((await ws.data())["usageUpdated"]["value"]) < 3:
                pass  # the stream is live
            await revoke()
            bound = started
            revoked_at = time.monotonic()
            close, received = await closed(ws, CLOSE_WITHIN)
            closed_after = time.monotonic() - revoked_at
        finally:
            stop.set()
            await producer
    assert (close.code, close.reason) == (4403, "session token revoked")
    assert closed_after < CLOSE_WITHIN
    # A message read after the revocation committed would count events sent after it: none.
    values = [float(m["payload"]["data"]["usageUpdated"]["value"]) for m in received]
    assert all(value <= bound for value in values), (bound, values)
    if revoked_by == "database":
        assert started > bound  # events did keep coming until the check stopped the stream


async def test_expired_token_socket_closes_and_answers_nothing(
    server: str, gql: GraphQLClient
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "brief"}) { __typename } }')
    issued = (
        await gql("""mutation { createCustomerSession(customerId: "brief", expiresInSeconds: 2)
        { ... on CustomerSession { token expiresAt } } }""")
    )["createCustomerSession"]
    expires_at = datetime.fromisoformat(issued["expiresAt"]).timestamp()
    async with connect(server, {"token": issued["token"]}) as ws:
        await ws.start(WALLET_SUB, {"c": "brief"})
        assert (await ws.data())["walletUpdated"]["balance"] == "0.00"
        await asyncio.sleep(max(0.0, expires_at - time.time()) + 0.05)
        await send_quietly(ws, '{ customer(customerId: "brief") { customerId } }', {})
        close, received = await closed(ws, CLOSE_WITHIN)
        closed_at = time.time()
    assert (close.code, close.reason) == (4403, "session token expired")
    assert closed_at - expires_at < CLOSE_WITHIN
    assert [m for m in received if m["type"] == "next"] == []


async def test_expired_token_socket_closes_by_itself(server: str, gql: GraphQLClient) -> None:
    await gql('mutation { createCustomer(input: {customerId: "idle"}) { __typename } }')
    token = await session_token(gql, "idle", seconds=2)
    async with connect(server, {"token": token}) as ws:
        await ws.start(WALLET_SUB, {"c": "idle"})
        assert (await ws.data())["walletUpdated"]["balance"] == "0.00"
        opened = time.monotonic()
        close, received = await closed(ws, 2 + CLOSE_WITHIN)
    assert (close.code, close.reason) == (4403, "session token expired")
    assert time.monotonic() - opened < 2 + CLOSE_WITHIN
    assert received == []
