"""The /graphql endpoint: Strawberry's ASGI view with meterflow's context and WebSocket auth."""

from __future__ import annotations

from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.schema import BaseSchema

from meterflow.db import SessionFactory
from meterflow.errors import AuthenticationError
from meterflow.http.auth import presented_key
from meterflow.jobs import JobQueue
from meterflow.schema.context import Context
from meterflow.services import accounts


class GraphQLView(GraphQL[Context, None]):
    def __init__(
        self,
        schema: BaseSchema,
        *,
        session_factory: SessionFactory,
        max_page_size: int,
        jobs: JobQueue | None = None,
    ) -> None:
        super().__init__(schema, graphql_ide="graphiql")
        self.session_factory = session_factory
        self.jobs = jobs
        self.max_page_size = max_page_size

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
        )

    async def on_ws_connect(self, context: Context) -> dict[str, Any] | None:
        """graphql-transport-ws `connection_init`: payload {"apiKey": ...} (or a header)."""
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        secret = (
            params.get("apiKey") or params.get("token") or presented_key(context.request.headers)
        )
        if not isinstance(secret, str) or not secret:
            raise ConnectionRejectionError({"reason": "missing apiKey in connection_init payload"})
        try:
            async with self.session_factory() as session:
                context.principal = await accounts.authenticate(session, secret=secret)
        except AuthenticationError as exc:
            raise ConnectionRejectionError({"reason": "invalid or revoked API key"}) from exc
        except (OperationalError, DBAPIError, OSError) as exc:
            raise ConnectionRejectionError({"reason": "database unavailable"}) from exc
        return {"accountId": str(context.principal.account_id)}
