"""The /graphql endpoint: Strawberry's ASGI view with meterflow's context and WebSocket auth
(the WebSocket protocol handler itself is in graphql_ws.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException, parse_content_type
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLRequestData
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from meterflow.db import SessionFactory
from meterflow.errors import AuthenticationError
from meterflow.http.auth import presented_key, resolve_principal
from meterflow.http.console import page as console_page
from meterflow.http.credential_watch import CredentialWatch
from meterflow.http.graphql_ws import StrictWebSocket, TransportWSHandler
from meterflow.http.jsonbody import BadJson, loads
from meterflow.http.responses import graphql_error_response
from meterflow.jobs import JobQueue
from meterflow.pubsub import Broker
from meterflow.schema.context import Context
from meterflow.secretbox import SecretBox
from meterflow.services import sessions

ERROR_CODES = {400: "BAD_REQUEST", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}
BODY_SHAPE = (
    'the body must be a JSON object: {"query": "...", "variables": {...}, "operationName": ...}'
    " (batches are not supported)"
)


def _request_data(data: Any, protocol: Any) -> GraphQLRequestData:
    """A POSTed body → the operation, refusing every shape Strawberry would trip over."""
    if not isinstance(data, dict):
        raise HTTPException(400, BODY_SHAPE)
    for key, kinds, expected in (
        ("query", (str,), "a string"),
        ("variables", (dict,), "an object"),
        ("operationName", (str,), "a string"),
        ("extensions", (dict,), "an object"),
    ):
        if data.get(key) is not None and not isinstance(data[key], kinds):
            raise HTTPException(400, f"{key} must be {expected} or null")
    return GraphQLRequestData(
        query=data.get("query"),
        variables=data.get("variables"),
        operation_name=data.get("operationName"),
        extensions=data.get("extensions"),
        protocol=protocol,
    )


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
        self.secret_keys = secret_keys
        self.secret_box = secret_box
        self.allow_private_webhook_targets = allow_private_webhook_targets

    async def render_graphql_ide(self, request: Request) -> Response:
        # GraphiQL bundled from npm by the console's build (Strawberry's page loads a CDN).
        return await console_page("ide.html")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        # Strawberry answers its HTTP errors in plain text; GraphQL clients read `errors`.
        try:
            response = await self.run(Request(scope=scope, receive=receive))
        except HTTPException as exc:
            code = ERROR_CODES.get(exc.status_code, "BAD_REQUEST")
            response = graphql_error_response(exc.status_code, code, exc.reason)
        await response(scope, receive, send)

    def encode_json(self, data: object) -> str:
        # A usage answer may hold 50,000 values: orjson encodes it ~10x faster than the
        # stdlib, which would hold the event loop for a few hundred ms. Same JSON, as text.
        try:
            return orjson.dumps(data).decode()
        except TypeError:  # e.g. an integer past 64 bits inside a JSON scalar
            return super().encode_json(data)  # type: ignore[return-value]

    def parse_json(self, data: str | bytes, what: str = "a JSON query parameter") -> Any:
        """Request JSON (the body, GET's variables and extensions): strict, ≤ 64 levels deep."""
        try:
            return loads(data, what=what)
        except BadJson as exc:
            raise HTTPException(400, str(exc)) from exc

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "GET":
            return await super().parse_http_body(request)
        content_type, _ = parse_content_type(request.content_type or "")
        if "application/json" not in content_type:
            raise HTTPException(
                400, "unsupported Content-Type: POST a JSON body as application/json"
            )
        transport = self._get_stream_transport_from_headers(request.headers)
        data = self.parse_json(await request.get_body(), "the body")
        return _request_data(data, transport.protocol if transport else "http")

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
