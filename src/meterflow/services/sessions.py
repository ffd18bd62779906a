"""Customer session tokens (Amberflo's portal sessions): read-only, one customer, expiring,
revocable. A token is `mfs_` + a random id + an HMAC of it; the row holds who and until when,
and only a SHA-256 of the id (like API keys: a database copy mints no working token)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import AuthenticationError, NotFoundError, ValidationError
from meterflow.models import CustomerSession
from meterflow.services import customers

TOKEN_PREFIX = "mfs_"  # noqa: S105  (a prefix, not a secret)
DEFAULT_TTL = timedelta(hours=24)
MAX_TTL = timedelta(days=30)


@dataclass(frozen=True)
class CustomerPrincipal:
    """A customer's own, read-only view: one account, one customer."""

    account_id: uuid.UUID
    customer_id: str
    session_id: uuid.UUID
    expires_at: datetime


@dataclass(frozen=True)
class IssuedSession:
    token: str
    customer_id: str
    expires_at: datetime


def _sign(secret_key: str, token_id: str) -> str:
    return hmac.new(secret_key.encode(), token_id.encode(), hashlib.sha256).hexdigest()[:32]


def _signed(secret_keys: Sequence[str], token_id: str, signature: str) -> bool:
    """Signed by the current key or one it replaced (tokens outlive a key rotation)."""
    return any(hmac.compare_digest(signature, _sign(key, token_id)) for key in secret_keys)


def token_hash(token_id: str) -> str:
    """What the row keeps. A fast hash is right: the id is 192 random bits, not a password."""
    return hashlib.sha256(token_id.encode()).hexdigest()


def _token_id(token: str) -> str:
    return token[len(TOKEN_PREFIX) :].partition(".")[0] if token.startswith(TOKEN_PREFIX) else ""


async def create_session(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    customer_id: str,
    expires_in_seconds: int | None,
    now: datetime,
    secret_key: str,
) -> IssuedSession:
    ttl = DEFAULT_TTL if expires_in_seconds is None else timedelta(seconds=expires_in_seconds)
    if ttl <= timedelta(0) or ttl > MAX_TTL:
        raise ValidationError(
            f"expiresInSeconds must be 1 to {int(MAX_TTL.total_seconds())}",
            field="expiresInSeconds",
        )
    if (
        await customers.get_customer(session, account_id=account_id, customer_id=customer_id)
        is None
    ):
        raise NotFoundError(f"no customer {customer_id!r} in this account")
    token_id = secrets.token_urlsafe(24)
    row = CustomerSession(
        account_id=account_id,
        token_hash=token_hash(token_id),
        customer_id=customer_id,
        expires_at=now + ttl,
        created_at=now,
    )
    session.add(row)
    await session.flush()
    token = f"{TOKEN_PREFIX}{token_id}.{_sign(secret_key, token_id)}"
    return IssuedSession(token=token, customer_id=customer_id, expires_at=row.expires_at)


async def authenticate(
    session: AsyncSession, *, token: str, now: datetime, secret_keys: tuple[str, ...]
) -> CustomerPrincipal:
    """The customer behind a token, or AuthenticationError saying why (expired, revoked...).
    `secret_keys`: the current key first, then the ones it replaced."""
    body = token[len(TOKEN_PREFIX) :] if token.startswith(TOKEN_PREFIX) else ""
    token_id, _, signature = body.partition(".")
    if not token_id or not _signed(secret_keys, token_id, signature):
        raise AuthenticationError("invalid session token")
    row = await session.scalar(
        select(CustomerSession).where(col(CustomerSession.token_hash) == token_hash(token_id))
    )
    if row is None:
        raise AuthenticationError("invalid session token")
    if row.revoked_at is not None:
        raise AuthenticationError("session token revoked")
    if row.expires_at <= now:
        raise AuthenticationError("session token expired")
    return CustomerPrincipal(row.account_id, row.customer_id, row.id, row.expires_at)


async def revoke(
    session: AsyncSession, *, account_id: uuid.UUID, token: str, now: datetime
) -> None:
    row = await session.scalar(
        select(CustomerSession).where(
            col(CustomerSession.account_id) == account_id,
            col(CustomerSession.token_hash) == token_hash(_token_id(token)),
        )
    )
    if row is None:
        raise NotFoundError("no such session in this account")
    row.revoked_at = row.revoked_at or now
    await session.flush()
