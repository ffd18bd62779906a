"""Each account connects its own Stripe account: a secret key to call Stripe with and the
signing secret of the webhook endpoint Stripe posts to. Both are sealed at rest."""

from __future__ import annotations

import contextlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.errors import ValidationError
from meterflow.models import CollectionMethod, StripeConnection
from meterflow.secretbox import SecretBox, UnreadableSecretError

# Secret (sk_) and restricted (rk_) keys; webhook endpoint secrets (whsec_). Stripe's are
# letters, digits and underscores; anything else is a paste error, told at once.
SECRET_KEY = re.compile(r"^(sk|rk)_[A-Za-z0-9_]{8,250}$")
WEBHOOK_SECRET = re.compile(r"^whsec_[A-Za-z0-9_+/=]{8,250}$")
MAX_DAYS_UNTIL_DUE = 365


@dataclass(frozen=True)
class Credentials:
    """A connection opened for use (clear keys: never logged, never returned to a client)."""

    secret_key: str
    webhook_secret: str
    collection_method: CollectionMethod
    days_until_due: int


def webhook_path(account_id: uuid.UUID) -> str:
    return f"/webhooks/stripe/{account_id}"


async def connect(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    secret_key: str,
    webhook_secret: str,
    collection_method: CollectionMethod,
    days_until_due: int,
    box: SecretBox,
    now: datetime,
) -> StripeConnection:
    """Connect (or reconnect with new keys and terms)."""
    secret_key, webhook_secret = secret_key.strip(), webhook_secret.strip()
    if not SECRET_KEY.match(secret_key):
        raise ValidationError(
            "secretKey must be a Stripe secret key (sk_…) or restricted key (rk_…)",
            field="secretKey",
        )
    if not WEBHOOK_SECRET.match(webhook_secret):
        raise ValidationError(
            "webhookSecret must be the endpoint's signing secret (whsec_…), shown in Stripe's "
            "dashboard under Developers → Webhooks",
            field="webhookSecret",
        )
    if not 1 <= days_until_due <= MAX_DAYS_UNTIL_DUE:
        raise ValidationError(
            f"daysUntilDue must be between 1 and {MAX_DAYS_UNTIL_DUE}", field="daysUntilDue"
        )
    values = {
        "secret_key": box.seal(secret_key),
        "webhook_secret": box.seal(webhook_secret),
        "key_last4": secret_key[-4:],
        "collection_method": collection_method,
        "days_until_due": days_until_due,
        "updated_at": now,
    }
    statement = insert(StripeConnection).values(account_id=account_id, connected_at=now, **values)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["account_id"], set_=values)
    )
    connection = await get(session, account_id=account_id)
    assert connection is not None
    return connection


async def disconnect(session: AsyncSession, *, account_id: uuid.UUID) -> bool:
    """Forget the keys. Payments already started keep their state; new ones are not sent."""
    result = await session.execute(
        delete(StripeConnection).where(col(StripeConnection.account_id) == account_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def get(session: AsyncSession, *, account_id: uuid.UUID) -> StripeConnection | None:
    return await session.scalar(
        select(StripeConnection)
        .where(col(StripeConnection.account_id) == account_id)
        .execution_options(populate_existing=True)
    )


async def credentials(
    session: AsyncSession, *, account_id: uuid.UUID, box: SecretBox
) -> Credentials | None:
    row = await get(session, account_id=account_id)
    if row is None:
        return None
    return Credentials(
        secret_key=box.open(row.secret_key),
        webhook_secret=box.open(row.webhook_secret),
        collection_method=row.collection_method,
        days_until_due=row.days_until_due,
    )


async def reseal_all(session: AsyncSession, *, box: SecretBox) -> int:
    """Every connection's keys sealed under the current secret key (`meterflow rotate-secrets`).
    A value none of the configured keys opens is left for an operator who still has its key."""
    rows = list(await session.scalars(select(StripeConnection).with_for_update()))
    for row in rows:
        for name in ("secret_key", "webhook_secret"):
            with contextlib.suppress(UnreadableSecretError):
                setattr(row, name, box.rotate(getattr(row, name)))
    await session.flush()
    return len(rows)
