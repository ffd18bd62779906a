"""GraphQL over WebSocket (graphql-transport-ws): authentication at connection_init."""

from __future__ import annotations

import json

import httpx
from httpx_ws import WebSocketDisconnect, aconnect_ws

from tests.client import TestAccount

PROTOCOL = ["graphql-transport-ws"]


async def test_query_over_websocket_with_api_key(server: str, account: TestAccount) -> None:
    async with (
        httpx.AsyncClient(base_url=server) as client,
        aconnect_ws("/graphql", client, subprotocols=PROTOCOL) as ws,
    ):
        await ws.send_text(
            json.dumps({"type": "connection_init", "payload": {"apiKey": account.admin_key}})
        )
        ack = json.loads(await ws.receive_text())
        assert ack["type"] == "connection_ack"
        assert ack["payload"]["accountId"] == str(account.account_id)
        await ws.send_text(
            json.dumps(
                {"id": "1", "type": "subscribe", "payload": {"query": "{ account { name } }"}}
            )
        )
        message = json.loads(await ws.receive_text())
        assert message == {
            "id": "1",
            "type": "next",
            "payload": {"data": {"account": {"name": "test"}}},
        }
        assert json.loads(await ws.receive_text()) == {"id": "1", "type": "complete"}


async def test_websocket_refuses_bad_or_missing_key(server: str) -> None:
    for payload in ({"apiKey": "mf_wrong"}, {}):
        async with (
            httpx.AsyncClient(base_url=server) as client,
            aconnect_ws("/graphql", client, subprotocols=PROTOCOL) as ws,
        ):
            await ws.send_text(json.dumps({"type": "connection_init", "payload": payload}))
            try:
                await ws.receive_text()
                raise AssertionError("the connection should have been closed")
            except WebSocketDisconnect as closed:
                assert closed.code == 4403
