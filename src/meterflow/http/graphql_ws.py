"""graphql-transport-ws at /graphql: Strawberry's handler, strict about what it reads and about
the credential behind everything it runs and sends."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    Message,
    SubscribeMessage,
)

from meterflow.db import is_transient
from meterflow.http import ws_messages
from meterflow.http.credential_watch import CredentialWatch
from meterflow.schema.context import Context

if TYPE_CHECKING:
    from strawberry.http.async_base_view import AsyncBaseHTTPView

CLOSE_REVOKED = 4403
CLOSE_TRY_AGAIN_LATER = 1013
MAX_CLOSE_REASON_BYTES = 123  # a close frame's payload is at most 125 bytes, 2 of them the code


def fit_close_reason(reason: str) -> str:
    data = reason.encode()
    if len(data) <= MAX_CLOSE_REASON_BYTES:
        return reason
    return data[: MAX_CLOSE_REASON_BYTES - 3].decode(errors="ignore") + "..."


class StrictWebSocket(ASGIWebSocketAdapter):
    """Reads only well-formed messages (ws_messages.parse: anything else closes the socket with
    the reason); sends nothing once the socket is closing; closes with a reason that fits a close
    frame (Strawberry would pass on a long GraphQL syntax error and crash on it), and with *why*
    connection_init was refused (Strawberry always says "Forbidden")."""

    def __init__(
        self,
        view: AsyncBaseHTTPView[Any, Any, Any, Any, Any, Any, Any],
        request: WebSocket,
        response: WebSocket,
    ) -> None:
        super().__init__(view, request, response)
        self.max_bytes: int = view.max_message_bytes  # type: ignore[attr-defined]
        self.context: Context | None = None

    @property
    def closed(self) -> bool:
        return self.ws.application_state == WebSocketState.DISCONNECTED

    async def iter_json(
        self, *, ignore_parsing_errors: bool = False
    ) -> AsyncGenerator[object, None]:
        while not self.closed:
            event = await self.ws.receive()
            if event["type"] == "websocket.disconnect" or self.closed:
                return
            try:
                message = ws_messages.parse(event.get("text"), max_bytes=self.max_bytes)
            except ws_messages.MalformedMessage as exc:
                await self.close(exc.code, exc.reason)
                return
            yield message

    async def send_json(self, message: Mapping[str, object]) -> None:
        if not self.closed:
            await super().send_json(message)

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        if code == CLOSE_REVOKED and self.context is not None and self.context.rejection:
            reason = self.context.rejection
        await super().close(code, fit_close_reason(reason))


class TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Registers an acknowledged socket with the process's CredentialWatch (which closes it when
    its key or token stops being valid), and re-checks the credential before it runs an
    operation and before it sends a message carrying data, so a revoked or expired credential
    neither acts nor reads."""

    websocket: StrictWebSocket

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.websocket.context = self.context
        self.watch: CredentialWatch = self.view.credential_watch  # type: ignore[attr-defined]
        self.watched = False

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        await super().handle_connection_init(message)
        principal = self.context.principal
        if self.connection_acknowledged and principal is not None and not self.watched:
            self.watch.register(self, principal)
            self.watched = True

    async def shutdown(self) -> None:
        if self.watched and self.context.principal is not None:
            self.watch.unregister(self, self.context.principal)
            self.watched = False
        await super().shutdown()

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        if self.connection_acknowledged and not await self.credential_holds():
            return
        await super().handle_subscribe(message)

    async def send_message(self, message: Message) -> None:
        # The data in a message was read before this check, so a message that goes out was
        # readable when the credential was last seen valid, never after its revocation.
        if message["type"] in ("next", "error") and not await self.credential_holds():
            return
        await super().send_message(message)

    async def credential_holds(self) -> bool:
        principal = self.context.principal
        if self.websocket.closed:
            return False
        if principal is None:
            return True  # not acknowledged: Strawberry refuses operations itself
        try:
            reason = await self.watch.check(principal)
        except Exception as exc:
            if not is_transient(exc):
                raise
            await self.close(CLOSE_TRY_AGAIN_LATER, "database unavailable; retry shortly")
            return False
        if reason is None:
            return True
        await self.revoke(reason)
        return False

    async def revoke(self, reason: str) -> None:
        await self.close(CLOSE_REVOKED, reason)

    async def close(self, code: int, reason: str) -> None:
        # Close first: cancelling the operations may cancel the task running this very call.
        await self.websocket.close(code, reason)
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
