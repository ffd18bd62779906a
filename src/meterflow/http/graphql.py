"""The /graphql endpoint: Strawberry's ASGI view with meterflow's context and WebSocket auth."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cross_web import HTTPException
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)

from meterflow.db import SessionFactory
from meterflow.errors import AuthenticationError
from meterflow.http import wire
from meterflow.http.auth import presented_key, resolve_principal
from meterflow.jobs import JobQueue
from meterflow.pubsub import Broker
from meterflow.schema.context import Context
from meterflow.secretbox import SecretBox
from meterflow.services import sessions


class _ExplainingSocket:
    """Wraps the WebSocket so a refused connection_init closes with *why* it was refused
    (Strawberry always says "Forbidden")."""

    def __init__(self, websocket: Any, context: Context) -> None:
        self._websocket = websocket
        self._context = context

    def __getattr__(self, name: str) -> Any:
        return getattr(self._websocket, name)

    async def close(self, code: int, reason: str) -> None:
        if code == 4403 and self._context.rejection:
            reason = self._context.rejection
        await self._websocket.close(code=code, reason=reason)


class _TransportWSHandler(BaseGraphQLTransportWSHandler[Context, None]):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.websocket = _ExplainingSocket(self.websocket, self.context)  # type: ignore[assignment]


class GraphQLView(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = _TransportWSHandler

    def __init__(
        self,
        schema: BaseSchema,
        *,
        session_factory: SessionFactory,
        max_page_size: int,
        jobs: JobQueue | None = None,
        broker: Broker | None = None,
        redis: Redis | None = None,
        secret_keys: tuple[str, ...],
        secret_box: SecretBox,
        allowed_origins: Sequence[str] = ("*",),
        allow_private_webhook_targets: bool = False,
    ) -> None:
        # Embedded widgets subscribe from other sites' pages. WebSockets authenticate with the
        # connection_init payload (never cookies), so other origins gain nothing to abuse.
        super().__init__(
            schema,
            graphql_ide="graphiql",
            keep_alive=True,
            keep_alive_interval=15,
            allowed_origins=allowed_origins,
        )
        self.session_factory = session_factory
        self.max_page_size = max_page_size
        self.jobs = jobs
        self.broker = broker
        self.redis = redis
        self.secret_keys = secret_keys
        self.secret_box = secret_box
        self.allow_private_webhook_targets = allow_private_webhook_targets

    def parse_json(self, data: str | bytes) -> Any:
        """An HTTP request's JSON (body, or GET variables): nested deeper than wire.MAX_DEPTH
        is a 400 saying so, never a RecursionError."""
        try:
            document = super().parse_json(data)
        except RecursionError as exc:
            raise HTTPException(400, wire.TOO_DEEP) from exc
        except ValueError as exc:  # e.g. an integer past Python's int-from-text limit
            raise HTTPException(400, f"Unable to parse request body as JSON: {exc}") from exc
        try:
            wire.check_depth(document, data, wire.MAX_DEPTH)
        except wire.TooDeep as exc:
            raise HTTPException(400, str(exc)) from exc
        return document

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket | None = None
    ) -> Context:
        # HTTP requests were authenticated by RequireApiKey; WebSockets are in on_ws_connect.
        principal = request.scope.get("state", {}).get("principal")
        return Context(
            request=request,
            response=response,
            session_factory=self.session_factory,
            max_page_size=self.max_page_size,
            jobs=self.jobs,
            principal=principal,
            broker=self.broker,
            redis=self.redis,
            secret_key=self.secret_keys[0],
            secret_box=self.secret_box,
            allow_private_webhook_targets=self.allow_private_webhook_targets,
        )

    async def on_ws_connect(self, context: Context) -> dict[str, Any] | None:
        """graphql-transport-ws `connection_init`: payload {"token": ...} (a customer session
        token) or {"apiKey": ...}, or the HTTP headers of the upgrade request."""
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        secret = (
            params.get("token") or params.get("apiKey") or presented_key(context.request.headers)
        )
        if not isinstance(secret, str) or not secret:
            context.rejection = "missing token or apiKey in the connection_init payload"
            raise ConnectionRejectionError()
        try:
            principal = await resolve_principal(self.session_factory, secret, self.secret_keys)
        except AuthenticationError as exc:
            context.rejection = (
                exc.message
                if secret.startswith(sessions.TOKEN_PREFIX)
                else "invalid or revoked API key"
            )
            raise ConnectionRejectionError() from exc
        except (OperationalError, DBAPIError, OSError) as exc:
            context.rejection = "database unavailable"
            raise ConnectionRejectionError() from exc
        context.principal = principal
        ack: dict[str, Any] = {"accountId": str(principal.account_id)}
        if isinstance(principal, sessions.CustomerPrincipal):
            ack["customerId"] = principal.customer_id
        return ack
