"""X-Request-Id: taken from the request (or made), set for the request's log lines and the
jobs it enqueues, and answered in the response."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meterflow import logs


class RequestId:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        sent = dict(scope.get("headers") or ()).get(b"x-request-id")
        rid = logs.request_id_from(sent.decode("latin-1") if sent else None)
        token = logs.request_id.set(rid)

        async def answer(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or ())
                headers.append((b"x-request-id", rid.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            logs.request_id.reset(token)
