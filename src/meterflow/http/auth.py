"""Authenticates /graphql HTTP requests before Strawberry sees them; WebSockets auth at init."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from meterflow import logs
from meterflow.db import SessionFactory
from meterflow.errors import AuthenticationError
from meterflow.http.responses import graphql_error_response
from meterflow.services import accounts, sessions

MISSING = "missing API key: send X-API-Key: <key> or Authorization: Bearer <key>"


def presented_key(headers: Headers) -> str | None:
    """The key from `X-API-Key` (any case, Amberflo's header) or `Authorization: Bearer`."""
    if value := headers.get("x-api-key"):
        return value.strip()
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


Principal = accounts.AccountPrincipal | sessions.CustomerPrincipal


async def resolve_principal(
    session_factory: SessionFactory, secret: str, secret_keys: tuple[str, ...]
) -> Principal:
    """An API key, or a customer session token (`mfs_...`). AuthenticationError says why not.
    `secret_keys`: the current secret key, then the ones it replaced."""
    async with session_factory() as session:
        if secret.startswith(sessions.TOKEN_PREFIX):
            return await sessions.authenticate(
                session, token=secret, now=datetime.now(UTC), secret_keys=secret_keys
            )
        return await accounts.authenticate(session, secret=secret)


class RequireApiKey:
    """Lets GraphiQL's page (GET without a query) through; everything else needs a valid key."""

    def __init__(
        self, app: ASGIApp, *, session_factory: SessionFactory, secret_keys: tuple[str, ...]
    ) -> None:
        self.app = app
        self.session_factory = session_factory
        self.secret_keys = secret_keys

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
            principal = await resolve_principal(self.session_factory, secret, self.secret_keys)
        except AuthenticationError as exc:
            message = (
                exc.message
                if secret.startswith(sessions.TOKEN_PREFIX)
                else "invalid or revoked API key"
            )
            response = graphql_error_response(
                401, "UNAUTHENTICATED", message, {"WWW-Authenticate": "Bearer"}
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
        token = logs.account.set(str(principal.account_id))
        try:
            await self.app(scope, receive, send)
        finally:
            logs.account.reset(token)

    @staticmethod
    def _is_ide_page(scope: Scope) -> bool:
        return scope["method"] in ("GET", "HEAD") and b"query=" not in scope.get(
            "query_string", b""
        )
