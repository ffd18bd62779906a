"""Is a credential that authenticated earlier still valid? For connections that outlive their
authentication (WebSockets): API keys can be revoked, customer session tokens revoked or expire.

Checks go by the credential's row (account + id), never by the secret, and many credentials are
checked in one statement, so a process can re-check every socket it holds in one round trip.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.services.accounts import AccountPrincipal
from meterflow.services.sessions import CustomerPrincipal


class CredentialKind(StrEnum):
    API_KEY = "api_key"
    SESSION = "session"


@dataclass(frozen=True)
class Credential:
    """The row behind a principal: an API key or a customer session."""

    kind: CredentialKind
    account_id: uuid.UUID
    id: uuid.UUID


def credential_of(principal: AccountPrincipal | CustomerPrincipal) -> Credential:
    if isinstance(principal, CustomerPrincipal):
        return Credential(CredentialKind.SESSION, principal.account_id, principal.session_id)
    return Credential(CredentialKind.API_KEY, principal.account_id, principal.key_id)


_UUIDS = ARRAY(UUID(as_uuid=True))
_ROWS = text("""
    SELECT 'api_key' AS kind, k.account_id, k.id, k.revoked_at, NULL::timestamptz AS expires_at
    FROM unnest(:key_accounts, :key_ids) AS w(account_id, id)
    JOIN api_keys k ON k.account_id = w.account_id AND k.id = w.id
    UNION ALL
    SELECT 'session', s.account_id, s.id, s.revoked_at, s.expires_at
    FROM unnest(:session_accounts, :session_ids) AS w(account_id, id)
    JOIN customer_sessions s ON s.account_id = w.account_id AND s.id = w.id
""").bindparams(
    bindparam("key_accounts", type_=_UUIDS),
    bindparam("key_ids", type_=_UUIDS),
    bindparam("session_accounts", type_=_UUIDS),
    bindparam("session_ids", type_=_UUIDS),
)


async def invalid_credentials(
    session: AsyncSession, *, credentials: Collection[Credential], now: datetime
) -> dict[Credential, str]:
    """The credentials among these that no longer authenticate, each with the reason (the words
    a client is told). One statement whatever the number; the rest are valid."""
    if not credentials:
        return {}
    keys = [c for c in credentials if c.kind is CredentialKind.API_KEY]
    tokens = [c for c in credentials if c.kind is CredentialKind.SESSION]
    rows = await session.execute(
        _ROWS,
        {
            "key_accounts": [c.account_id for c in keys],
            "key_ids": [c.id for c in keys],
            "session_accounts": [c.account_id for c in tokens],
            "session_ids": [c.id for c in tokens],
        },
    )
    reasons: dict[Credential, str] = {
        c: "invalid API key" if c.kind is CredentialKind.API_KEY else "invalid session token"
        for c in credentials
    }  # a row that is gone (its account deleted) no longer authenticates either
    for kind, account_id, row_id, revoked_at, expires_at in rows:
        credential = Credential(CredentialKind(kind), account_id, row_id)
        if revoked_at is not None:
            reasons[credential] = (
                "API key revoked" if kind == CredentialKind.API_KEY else "session token revoked"
            )
        elif expires_at is not None and expires_at <= now:
            reasons[credential] = "session token expired"
        else:
            del reasons[credential]
    return reasons
