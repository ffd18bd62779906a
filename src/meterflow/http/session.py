"""Amberflo's customer portal session: POST /session {customerId, expirationEpochMilliSeconds?}
→ {sessionToken, expiresAt, url}. The token is meterflow's read-only customer session token."""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meterflow.db import is_transient, unit_of_work
from meterflow.errors import AuthenticationError, MeterflowError
from meterflow.http.auth import presented_key
from meterflow.services import accounts, sessions


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def session_endpoint(request: Request) -> Response:
    state = request.app.state
    secret = presented_key(request.headers)
    if secret is None:
        return _error(401, "missing API key: send it in the X-API-KEY header")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body is not JSON")
    customer_id = body.get("customerId") if isinstance(body, dict) else None
    if not isinstance(customer_id, str) or not customer_id:
        return _error(400, "customerId is required")
    now = datetime.now(UTC)
    expires_ms = body.get("expirationEpochMilliSeconds")
    seconds = None
    if expires_ms is not None:
        if not isinstance(expires_ms, int | float):
            return _error(400, "expirationEpochMilliSeconds must be a number")
        seconds = int(expires_ms / 1000 - now.timestamp())
    try:
        async with unit_of_work(state.session_factory) as session:
            principal = await accounts.authenticate(session, secret=secret)
            if not principal.is_admin:
                return _error(403, "an admin API key is needed to create sessions")
            issued = await sessions.create_session(
                session,
                account_id=principal.account_id,
                customer_id=customer_id,
                expires_in_seconds=seconds,
                now=now,
                secret_key=state.secret_keys[0],
            )
    except AuthenticationError:
        return _error(401, "invalid or revoked API key")
    except MeterflowError as exc:
        return _error(404 if exc.code == "NOT_FOUND" else 400, exc.message)
    except Exception as exc:
        if is_transient(exc):
            return _error(503, "the database is unavailable; retry shortly")
        raise
    base = str(request.base_url).rstrip("/")
    return JSONResponse(
        {
            "sessionToken": issued.token,
            "customerId": issued.customer_id,
            "expiresAt": issued.expires_at.isoformat(),
            "url": f"{base}/graphql",
        }
    )
