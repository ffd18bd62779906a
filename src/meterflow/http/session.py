"""Amberflo's customer portal session: POST /session {customerId, expirationEpochMilliSeconds?}
→ {sessionToken, expiresAt, url}. The token is meterflow's read-only customer session token."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from meterflow.db import (
    TIMEOUT_MESSAGE,
    SessionFactory,
    is_timeout,
    is_transient,
    unit_of_work,
)
from meterflow.errors import AuthenticationError, MeterflowError, ValidationError
from meterflow.http.auth import presented_key
from meterflow.http.jsonbody import BadJson, loads
from meterflow.services import accounts, sessions

MAX_CUSTOMER_ID = 200


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def parse_request(body: Any, now: datetime) -> tuple[str, int | None]:
    """Amberflo's body → (customerId, seconds until expiry or None for the default)."""
    if not isinstance(body, dict):
        raise ValidationError(
            "the body must be a JSON object {customerId, expirationEpochMilliSeconds?}"
        )
    customer_id = body.get("customerId")
    if (
        not isinstance(customer_id, str)
        or not 0 < len(customer_id) <= MAX_CUSTOMER_ID
        or not customer_id.isprintable()
    ):
        raise ValidationError(
            f"customerId is required: a string of 1 to {MAX_CUSTOMER_ID} printable characters"
        )
    expires_ms = body.get("expirationEpochMilliSeconds")
    if expires_ms is None:
        return customer_id, None
    if isinstance(expires_ms, bool) or not isinstance(expires_ms, int | float):
        raise ValidationError(
            "expirationEpochMilliSeconds must be a number: milliseconds since 1970-01-01 UTC"
        )
    now_ms = now.timestamp() * 1000
    latest_ms = now_ms + sessions.MAX_TTL.total_seconds() * 1000
    # Compared as numbers before any datetime or timedelta is built: 1e300 cannot overflow.
    if not now_ms < expires_ms <= latest_ms:
        raise ValidationError(
            f"expirationEpochMilliSeconds must be in the future and at most "
            f"{sessions.MAX_TTL.days} days ahead (between {math.ceil(now_ms)} and "
            f"{math.floor(latest_ms)}); got {expires_ms}"
        )
    return customer_id, max(1, math.ceil((expires_ms - now_ms) / 1000))


@dataclass(frozen=True)
class PortalSession:
    """POST /session with what it needs, handed in by the app factory."""

    session_factory: SessionFactory
    secret_key: str  # the current one: new tokens are signed with it

    async def endpoint(self, request: Request) -> Response:
        return await _create(self, request)


async def _create(deps: PortalSession, request: Request) -> Response:
    secret = presented_key(request.headers)
    if secret is None:
        return _error(401, "missing API key: send it in the X-API-KEY header")
    now = datetime.now(UTC)
    try:
        customer_id, seconds = parse_request(loads(await request.body()), now)
    except (BadJson, ValidationError) as exc:
        return _error(400, str(exc))
    try:
        async with unit_of_work(deps.session_factory) as session:
            principal = await accounts.authenticate(session, secret=secret)
            if not principal.is_admin:
                return _error(403, "an admin API key is needed to create sessions")
            issued = await sessions.create_session(
                session,
                account_id=principal.account_id,
                customer_id=customer_id,
                expires_in_seconds=seconds,
                now=now,
                secret_key=deps.secret_key,
            )
    except AuthenticationError:
        return _error(401, "invalid or revoked API key")
    except MeterflowError as exc:
        return _error(404 if exc.code == "NOT_FOUND" else 400, exc.message)
    except Exception as exc:
        if is_timeout(exc):
            return _error(504, TIMEOUT_MESSAGE)
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
            # The hosted portal; the token rides in the fragment, never sent to a server.
            "portalUrl": f"{base}/portal#token={issued.token}",
        }
    )
