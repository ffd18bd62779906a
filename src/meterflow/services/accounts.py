"""Accounts (tenants), their API keys, and authentication of a presented key."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import AuthenticationError, NotFoundError
from meterflow.models import Account, ApiKey, ApiKeyScope
from meterflow.services import validation

KEY_PREFIX = "mf_"
SHOWN_PREFIX_LENGTH = 11


@dataclass(frozen=True)
class AccountPrincipal:
    """Who is calling: an API key of one account, with its scope."""

    account_id: uuid.UUID
    key_id: uuid.UUID
    scope: ApiKeyScope

    @property
    def is_admin(self) -> bool:
        return self.scope is ApiKeyScope.ADMIN


@dataclass(frozen=True)
class IssuedKey:
    """A new key. `secret` exists only here: the database keeps its hash."""

    key: ApiKey
    secret: str


def hash_key(secret: str) -> str:
    # Keys are 256 random bits, so a fast hash is enough: nobody can brute-force the preimage,
    # and a per-request lookup stays cheap. (Passwords would need a slow KDF; these are not.)
    return hashlib.sha256(secret.encode()).hexdigest()


async def create_account(session: AsyncSession, *, name: str) -> Account:
    account = Account(name=validation.required_text(name, field="name", max_length=200))
    session.add(account)
    await session.flush()
    return account


async def update_account(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    name: str | None = None,
    auto_create_customers: bool | None = None,
) -> Account:
    account = await session.get(Account, account_id, with_for_update=True)
    if account is None:
        raise NotFoundError("no such account")
    if name is not None:
        account.name = validation.required_text(name, field="name", max_length=200)
    if auto_create_customers is not None:
        account.auto_create_customers = auto_create_customers
    await session.flush()
    return account


async def issue_api_key(
    session: AsyncSession, *, account_id: uuid.UUID, name: str, scope: ApiKeyScope
) -> IssuedKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(
        account_id=account_id,
        name=validation.required_text(name, field="name", max_length=200),
        prefix=secret[:SHOWN_PREFIX_LENGTH],
        key_hash=hash_key(secret),
        scope=scope,
    )
    session.add(key)
    await session.flush()
    return IssuedKey(key=key, secret=secret)


async def list_api_keys(session: AsyncSession, *, account_id: uuid.UUID) -> list[ApiKey]:
    rows = await session.scalars(
        select(ApiKey)
        .where(col(ApiKey.account_id) == account_id)
        .order_by(col(ApiKey.created_at), col(ApiKey.id))
    )
    return list(rows)


async def revoke_api_key(
    session: AsyncSession, *, account_id: uuid.UUID, key_id: uuid.UUID, now: datetime
) -> ApiKey:
    key = await session.scalar(
        select(ApiKey).where(col(ApiKey.account_id) == account_id, col(ApiKey.id) == key_id)
    )
    if key is None:
        raise NotFoundError(f"no API key {key_id} in this account")
    if key.revoked_at is None:
        key.revoked_at = now
        await session.flush()
    return key


async def authenticate(session: AsyncSession, *, secret: str) -> AccountPrincipal:
    """The principal behind a key, or AuthenticationError (never saying which part failed)."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 200:
        raise AuthenticationError("invalid API key")
    row = (
        await session.execute(
            select(col(ApiKey.account_id), col(ApiKey.id), col(ApiKey.scope)).where(
                col(ApiKey.key_hash) == hash_key(secret), col(ApiKey.revoked_at).is_(None)
            )
        )
    ).one_or_none()
    if row is None:
        raise AuthenticationError("invalid API key")
    return AccountPrincipal(account_id=row[0], key_id=row[1], scope=ApiKeyScope(row[2]))
