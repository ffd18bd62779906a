"""A graphql-transport-ws client over a real WebSocket, as a widget or dashboard would use."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from httpx_ws import AsyncWebSocketSession, aconnect_ws


class Subscription:
    def __init__(self, ws: AsyncWebSocketSession) -> None:
        self.ws = ws
        self._next_id = 0

    async def start(self, query: str, variables: dict[str, Any] | None = None) -> str:
        self._next_id += 1
        op = str(self._next_id)
        await self.ws.send_text(
            json.dumps(
                {
                    "id": op,
                    "type": "subscribe",
                    "payload": {"query": query, "variables": variables or {}},
                }
            )
        )
        return op

    async def message(self, within: float = 10) -> dict[str, Any]:
        while True:
            message = json.loads(await self.ws.receive_text(timeout=within))
            if message["type"] in ("ping", "pong", "ka"):
                if message["type"] == "ping":
                    await self.ws.send_text(json.dumps({"type": "pong"}))
                continue
            return message  # type: ignore[no-any-return]

    async def data(self, within: float = 10) -> dict[str, Any]:
        message = await self.message(within)
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        return message["payload"]["data"]  # type: ignore[no-any-return]


@asynccontextmanager
async def connect(base_url: str, payload: dict[str, Any]) -> AsyncIterator[Subscription]:
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=30) as client,
        aconnect_ws(
            "/graphql",
            client,
            subprotocols=["graphql-transport-ws"],
            keepalive_ping_interval_seconds=None,
        ) as ws,
    ):
        await ws.send_text(json.dumps({"type": "connection_init", "payload": payload}))
        ack = json.loads(await ws.receive_text(timeout=10))
        assert ack["type"] == "connection_ack", ack
        yield Subscription(ws)
