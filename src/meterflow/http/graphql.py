"""The /graphql endpoint: Strawberry's ASGI view with meterflow's context and WebSocket auth
(the WebSocket protocol handler itself is in graphql_ws.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from meterflow.db import SessionFactory
from meterflow.errors import AuthenticationError
from meterflow.http.auth import presented_key, resolve_principal
from meterflow.http.credential_watch import CredentialWatch
from meterflow.http.graphql_ws import StrictWebSocket, TransportWSHandler
from meterflow.jobs import JobQueue
from meterflow.pubsub import Broker
from meterflow.schema.context import Context
from meterflow.services import sessions


class GraphQLView(GraphQL[Context, None]):
    graphql_transport_ws_handler_class = TransportWSHandler
    websocket_adapter_class = StrictWebSocket

    def __init__(
        self,
        schema: BaseSchema,
        *,
        session_factory: SessionFactory,
        max_page_size: int,
        credential_watch: CredentialWatch,
        max_message_bytes: int,
        jobs: JobQueue | None = None,
        broker: Broker | None = None,
        redis: Redis | None = None,
        secret_key: str = "",
        allowed_origins: Sequence[str] = ("*",),
    ) -> None:
        # Embedded widgets subscribe from other sites' pages. WebSockets authenticate with the
        # connection_init payload (never cookies), so other origins gain nothing to abuse.
        super().__init__(
            schema,
            graphql_ide="graphiql",
            keep_alive=True,
            keep_alive_interval=15,
            allowed_origins=allowed_origins,
            # Only graphql-transport-ws: the legacy subscriptions-transport-ws handler would
            # bypass the message and credential checks in graphql_ws.py.
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        )
        self.credential_watch = credential_watch
        self.max_message_bytes = max_message_bytes
        self.session_factory = session_factory
        self.max_page_size = max_page_size
        self.jobs = jobs
        self.broker = broker
        self.redis = redis
        self.secret_key = secret_key

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
            secret_key=self.secret_key,
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
            principal = await resolve_principal(self.session_factory, secret, self.secret_key)
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
