"""Authenticates /graphql HTTP requests before Strawberry sees them; WebSockets auth at init."""

from __future__ import annotations

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from meterflow.db import SessionFactory
from meterflow.errors import AuthenticationError
from meterflow.http.responses import graphql_error_response
from meterflow.services import accounts

MISSING = "missing API key: send X-API-Key: <key> or Authorization: Bearer <key>"


def presented_key(headers: Headers) -> str | None:
    """The key from `X-API-Key` (any case, Amberflo's header) or `Authorization: Bearer`."""
    if value := headers.get("x-api-key"):
        return value.strip()
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


class RequireApiKey:
    """Lets GraphiQL's page (GET without a query) through; everything else needs a valid key."""

    def __init__(self, app: ASGIApp, *, session_factory: SessionFactory) -> None:
        self.app = app
        self.session_factory = session_factory

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._is_ide_page(scope):
            await self.app(scope, receive, send)
            return
        secret = presented_key(Headers(scope=scope))
        if secret is None:
            response = graphql_error_response(
                401, "UNAUTHENTICATED", MISSING, {"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        try:
            async with self.session_factory() as session:
                principal = await accounts.authenticate(session, secret=secret)
        except AuthenticationError:
            response = graphql_error_response(
                401, "UNAUTHENTICATED", "invalid or revoked API key", {"WWW-Authenticate": "Bearer"}
            )
            await response(scope, receive, send)
            return
        except (OperationalError, DBAPIError, OSError):
            response = graphql_error_response(
                503, "UNAVAILABLE", "the database is unavailable; retry shortly"
            )
            await response(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)

    @staticmethod
    def _is_ide_page(scope: Scope) -> bool:
        return scope["method"] in ("GET", "HEAD") and b"query=" not in scope.get(
            "query_string", b""
        )
