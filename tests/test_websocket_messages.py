"""Malformed graphql-transport-ws messages close the socket with 4400 and a reason (never an
unhandled error); messages are capped at the HTTP body limit; the server stays healthy."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, WebSocketNetworkError, aconnect_ws

from meterflow.config import Settings
from tests.client import TestAccount

PROTOCOL = ["graphql-transport-ws"]


def nested(depth: int) -> str:
    """A ping whose whole message is `depth` containers deep (the message itself is one)."""
    return '{"type": "ping", "payload": ' + '{"a": ' * (depth - 2) + "{}" + "}" * (depth - 1)


@asynccontextmanager
async def socket(server: str, key: str | None) -> AsyncIterator[AsyncWebSocketSession]:
    """A graphql-transport-ws socket, acknowledged when `key` is given."""
    async with (
        httpx.AsyncClient(base_url=server, timeout=30) as client,
        aconnect_ws(
            "/graphql",
            client,
            subprotocols=PROTOCOL,
            keepalive_ping_interval_seconds=None,
            max_message_size_bytes=1 << 20,
        ) as ws,
    ):
        if key is not None:
            await ws.send_text(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
            assert json.loads(await ws.receive_text(timeout=10))["type"] == "connection_ack"
        yield ws


async def close_of(ws: AsyncWebSocketSession) -> WebSocketDisconnect:
    """The server's close; any message it sends instead fails the test."""
    try:
        message = await ws.receive_text(timeout=10)
    except WebSocketDisconnect as close:
        return close
    raise AssertionError(f"expected the socket to close, got {message!r}")


async def assert_healthy(server: str, key: str) -> None:
    async with httpx.AsyncClient(base_url=server, timeout=10) as client:
        assert (await client.get("/healthz")).status_code == 200
    async with socket(server, key) as ws:
        await ws.send_text(json.dumps({"type": "ping"}))
        assert json.loads(await ws.receive_text(timeout=10)) == {"type": "pong"}


SUBSCRIBE = '{"type": "subscribe", "id": "1", "payload": %s}'

MALFORMED = {
    "null": "null",
    "list": "[1,2]",
    "number": "123",
    "string": '"x"',
    "not JSON": "{type: ping}",
    "NaN": '{"type": "ping", "payload": {"x": NaN}}',
    "lone surrogate": '{"type": "ping", "payload": {"x": "\\ud800"}}',
    "65 levels": nested(65),
    "100,000 levels": "[" * 100_000 + "]" * 100_000,
    "deep variables": SUBSCRIBE % ('{"query": "{ __typename }", "variables": ' + nested(70) + "}"),
    "no type": '{"id": "1"}',
    "type not a string": '{"type": 5}',
    "unknown type": '{"type": "start"}',
    "payload null": SUBSCRIBE % "null",
    "payload a list": SUBSCRIBE % "[]",
    "id a number": '{"type": "subscribe", "id": 1, "payload": {"query": "{ __typename }"}}',
    "id a list": '{"type": "subscribe", "id": [1], "payload": {"query": "{ __typename }"}}',
    "query a number": SUBSCRIBE % '{"query": 1}',
    "variables a string": SUBSCRIBE % '{"query": "{ __typename }", "variables": "x"}',
    "operationName a list": SUBSCRIBE % '{"query": "{ __typename }", "operationName": []}',
    "complete without id": '{"type": "complete"}',
    "ping payload a string": '{"type": "ping", "payload": "x"}',
    "long syntax error": SUBSCRIBE % json.dumps({"query": "{ a } " + "b" * 400}),
}


@pytest.mark.parametrize("message", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_message_closes_with_4400(
    server: str, account: TestAccount, message: str
) -> None:
    async with socket(server, account.admin_key) as ws:
        await ws.send_text(message)
        close = await close_of(ws)
    assert close.code == 4400, (close.code, close.reason)
    assert close.reason
    assert len(close.reason.encode()) <= 123  # what a close frame can carry
    await assert_healthy(server, account.admin_key)


@pytest.mark.parametrize("message", ["null", "[1,2]", nested(65)], ids=["null", "list", "deep"])
async def test_malformed_message_before_connection_init_closes_with_4400(
    server: str, account: TestAccount, message: str
) -> None:
    async with socket(server, None) as ws:
        await ws.send_text(message)
        close = await close_of(ws)
    assert close.code == 4400, (close.code, close.reason)
    await assert_healthy(server, account.admin_key)


async def test_binary_frame_closes_with_4400(server: str, account: TestAccount) -> None:
    async with socket(server, account.admin_key) as ws:
        await ws.send_bytes(json.dumps({"type": "ping"}).encode())
        close = await close_of(ws)
    assert close.code == 4400, (close.code, close.reason)
    await assert_healthy(server, account.admin_key)


async def test_sixty_four_levels_are_fine(server: str, account: TestAccount) -> None:
    async with socket(server, account.admin_key) as ws:
        await ws.send_text(nested(64))
        assert json.loads(await ws.receive_text(timeout=10)) == {"type": "pong"}


async def test_messages_are_capped_at_the_http_body_limit(
    server: str, account: TestAccount
) -> None:
    limit = Settings().max_request_bytes
    envelope = '{"type": "ping", "payload": {"x": "%s"}}'
    fits = envelope % ("a" * (limit - len(envelope) + 2))
    assert len(fits) == limit
    async with socket(server, account.admin_key) as ws:
        await ws.send_text(fits)  # exactly at the limit: accepted
        assert json.loads(await ws.receive_text(timeout=30)) == {"type": "pong"}
        try:
            await ws.send_text(envelope % ("a" * (limit - len(envelope) + 3)))
            close = await close_of(ws)
            assert close.code == 1009, (close.code, close.reason)  # "message too big"
        except WebSocketNetworkError:
            pass  # the server stopped reading mid-message and dropped the connection at once
    await assert_healthy(server, account.admin_key)


async def test_only_graphql_transport_ws_is_spoken(server: str, account: TestAccount) -> None:
    """The legacy subscriptions-transport-ws protocol would bypass these checks: refused."""
    async with (
        httpx.AsyncClient(base_url=server, timeout=30) as client,
        aconnect_ws(
            "/graphql", client, subprotocols=["graphql-ws"], keepalive_ping_interval_seconds=None
        ) as ws,
    ):
        await ws.send_text(
            json.dumps({"type": "connection_init", "payload": {"apiKey": account.admin_key}})
        )
        close = await close_of(ws)
    assert close.code == 4406
