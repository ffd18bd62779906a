"""The account's webhook endpoints: where its billing events go. The URL must pass the same
rule as alert webhooks (netguard: public https, checked again at every delivery); the URL and
the signing secret are sealed at rest; the secret is shown once, when it is made.

A rotation keeps the old secret signing beside the new one for ROTATION_OVERLAP, so receivers
can switch without missing a delivery.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow import netguard, webhook_signing
from meterflow.errors import NotFoundError, ValidationError
from meterflow.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from meterflow.secretbox import SecretBox, UnreadableSecretError
from meterflow.services import outbox, validation
from meterflow.services.pagination import Page, decode_cursor
from meterflow.services.webhook_events import EVENT_TYPES, forget_endpoints

ROTATION_OVERLAP = timedelta(hours=24)
MAX_ENDPOINTS = 50
MAX_URL = 2000
DELIVERY_STATUSES = ("PENDING", "DELIVERED", "FAILED")
UNREADABLE = "(unreadable: sealed with a secret key that is no longer configured)"


@dataclass(frozen=True)
class Created:
    endpoint: WebhookEndpoint
    secret: str  # in clear, this once


def event_types(values: list[str]) -> list[str]:
    """Known event types, or ["*"] (everything but the opt-in ones)."""
    cleaned = sorted({v.strip() for v in values})
    if not cleaned:
        raise ValidationError('eventTypes names at least one type, or "*"', field="eventTypes")
    unknown = [v for v in cleaned if v != "*" and v not in EVENT_TYPES]
    if unknown:
        raise ValidationError(
            f'unknown event types {unknown[:5]}: use "*" or some of {", ".join(EVENT_TYPES)}',
            field="eventTypes",
        )
    return cleaned


async def _checked_url(url: str, *, allow_private: bool, resolve: netguard.Resolver) -> str:
    url = url.strip()
    if len(url) > MAX_URL:
        raise ValidationError(f"url is longer than {MAX_URL} characters", field="url")
    try:
        await netguard.check_target(url, allow_private=allow_private, resolve=resolve)
    except netguard.TargetRefused as exc:
        raise ValidationError(f"url {exc.reason}", field="url") from None
    return url


def _threshold(value: Decimal | None) -> Decimal | None:
    if value is None:
        return None
    if not value.is_finite() or value < 0 or value > Decimal("1e12"):
        raise ValidationError(
            "balanceLowThreshold must be between 0 and 1e12", field="balanceLowThreshold"
        )
    return value


async def create(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    url: str,
    types: list[str],
    description: str | None,
    balance_low_threshold: Decimal | None,
    box: SecretBox,
    allow_private: bool,
    now: datetime,
    resolve: netguard.Resolver = netguard.system_resolver,
) -> Created:
    # Cheap checks first: the URL's costs a DNS lookup.
    chosen = event_types(types)
    threshold = _threshold(balance_low_threshold)
    if description is not None:
        description = validation.bounded_text(description, field="description", max_length=500)
    checked = await _checked_url(url, allow_private=allow_private, resolve=resolve)
    count = len(await list_endpoints(session, account_id=account_id))
    if count >= MAX_ENDPOINTS:
        raise ValidationError(f"an account has at most {MAX_ENDPOINTS} endpoints", field="url")
    secret = webhook_signing.new_secret()
    row = WebhookEndpoint(
        account_id=account_id,
        url=box.seal(checked),
        event_types=chosen,
        description=description,
        enabled=True,
        secret=box.seal(secret),
        balance_low_threshold=threshold,
        created_at=now,
        updated_at=now,
    )
    session.add(row)
    await session.flush()
    forget_endpoints(session, account_id)
    return Created(row, secret)


async def get(
    session: AsyncSession, *, account_id: uuid.UUID, endpoint_id: uuid.UUID, lock: bool = False
) -> WebhookEndpoint:
    query = select(WebhookEndpoint).where(
        col(WebhookEndpoint.account_id) == account_id, col(WebhookEndpoint.id) == endpoint_id
    )
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFoundError(f"no webhook endpoint {endpoint_id} in this account")
    return row


async def list_endpoints(session: AsyncSession, *, account_id: uuid.UUID) -> list[WebhookEndpoint]:
    return list(
        await session.scalars(
            select(WebhookEndpoint)
            .where(col(WebhookEndpoint.account_id) == account_id)
            .order_by(col(WebhookEndpoint.created_at), col(WebhookEndpoint.id))
        )
    )


async def update(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    changes: dict[str, Any],
    box: SecretBox,
    allow_private: bool,
    now: datetime,
    resolve: netguard.Resolver = netguard.system_resolver,
) -> WebhookEndpoint:
    """Partial update: url, event_types, description, enabled, balance_low_threshold.
    Enabling an endpoint the worker disabled starts it afresh (its failure run forgotten)."""
    row = await get(session, account_id=account_id, endpoint_id=endpoint_id, lock=True)
    if changes.get("url") is not None:
        checked = await _checked_url(changes["url"], allow_private=allow_private, resolve=resolve)
        row.url = box.seal(checked)
    if changes.get("event_types") is not None:
        row.event_types = event_types(changes["event_types"])
    if "description" in changes and changes["description"] is not None:
        row.description = validation.bounded_text(
            changes["description"], field="description", max_length=500
        )
    if "balance_low_threshold" in changes:
        row.balance_low_threshold = _threshold(changes["balance_low_threshold"])
    if changes.get("enabled") is not None:
        if changes["enabled"] and not row.enabled:
            row.failing_since = row.disabled_at = None
        row.enabled = bool(changes["enabled"])
    row.updated_at = now
    await session.flush()
    forget_endpoints(session, account_id)
    return row


async def rotate_secret(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID,
    box: SecretBox,
    now: datetime,
) -> Created:
    """A new signing secret; the old one keeps signing beside it for ROTATION_OVERLAP."""
    row = await get(session, account_id=account_id, endpoint_id=endpoint_id, lock=True)
    secret = webhook_signing.new_secret()
    row.previous_secret = row.secret
    row.previous_secret_expires_at = now + ROTATION_OVERLAP
    row.secret = box.seal(secret)
    row.updated_at = now
    await session.flush()
    return Created(row, secret)


async def delete(
    session: AsyncSession, *, account_id: uuid.UUID, endpoint_id: uuid.UUID
) -> WebhookEndpoint:
    """Gone for good; its pending deliveries are dropped (they fail as `endpoint_deleted`)."""
    row = await get(session, account_id=account_id, endpoint_id=endpoint_id, lock=True)
    await session.delete(row)
    await session.flush()
    forget_endpoints(session, account_id)
    return row


def signing_secrets(row: WebhookEndpoint, box: SecretBox, now: datetime) -> list[str]:
    """The secrets that sign a delivery now: the current one, and the old one while it lasts."""
    found = [box.open(row.secret)]
    expires = row.previous_secret_expires_at
    if row.previous_secret and expires is not None and expires > now:
        found.append(box.open(row.previous_secret))
    return found


def shown_url(row: WebhookEndpoint, box: SecretBox) -> str:
    try:
        return box.open(row.url)
    except UnreadableSecretError:
        return UNREADABLE


async def deliveries(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    endpoint_id: uuid.UUID | None,
    delivery_id: uuid.UUID | None = None,
    status: str | None,
    limit: int,
    after: str | None,
) -> Page[tuple[WebhookDelivery, WebhookEvent]]:
    """Deliveries newest first, each with its event; keyset paging on (created_at, id)."""
    query = (
        select(WebhookDelivery, WebhookEvent)
        .join(
            WebhookEvent,
            (col(WebhookEvent.account_id) == col(WebhookDelivery.account_id))
            & (col(WebhookEvent.id) == col(WebhookDelivery.event_id)),
        )
        .where(col(WebhookDelivery.account_id) == account_id)
    )
    if endpoint_id is not None:
        query = query.where(col(WebhookDelivery.endpoint_id) == endpoint_id)
    if delivery_id is not None:
        query = query.where(col(WebhookDelivery.id) == delivery_id)
    if status is not None:
        if status not in DELIVERY_STATUSES:
            raise ValidationError(f"status is one of {DELIVERY_STATUSES}", field="status")
        query = query.where(col(WebhookDelivery.status) == status)
    if after:
        position = decode_cursor(after)
        query = query.where(
            (col(WebhookDelivery.created_at) < position.created_at)
            | (
                (col(WebhookDelivery.created_at) == position.created_at)
                & (col(WebhookDelivery.id) < position.id)
            )
        )
    rows = list(
        await session.execute(
            query.order_by(
                col(WebhookDelivery.created_at).desc(), col(WebhookDelivery.id).desc()
            ).limit(limit + 1)
        )
    )
    items = [(row[0], row[1]) for row in rows[:limit]]
    return Page(items, len(rows) > limit)


async def replay(
    session: AsyncSession, *, account_id: uuid.UUID, delivery_id: uuid.UUID, now: datetime
) -> WebhookDelivery:
    """Send a delivery's event again to its endpoint, with the same event id (receivers that
    already have it drop it): a new delivery, so the first one's log stays as it was."""
    original = await session.scalar(
        select(WebhookDelivery).where(
            col(WebhookDelivery.account_id) == account_id, col(WebhookDelivery.id) == delivery_id
        )
    )
    if original is None:
        raise NotFoundError(f"no webhook delivery {delivery_id} in this account")
    await get(session, account_id=account_id, endpoint_id=original.endpoint_id)
    copy = WebhookDelivery(
        account_id=account_id,
        endpoint_id=original.endpoint_id,
        event_id=original.event_id,
        status="PENDING",
        attempts=[],
        created_at=now,
        updated_at=now,
    )
    session.add(copy)
    await session.flush()
    await outbox.add(
        session, account_id=account_id, kind=outbox.DELIVER_WEBHOOK, items={str(copy.id): {}}
    )
    return copy


async def reseal_all(session: AsyncSession, *, box: SecretBox) -> int:
    """Every endpoint's URL and secrets sealed under the current key (`rotate-secrets`)."""
    rows = list(await session.scalars(select(WebhookEndpoint).with_for_update()))
    for row in rows:
        for name in ("url", "secret", "previous_secret"):
            value = getattr(row, name)
            if value:
                try:
                    setattr(row, name, box.rotate(value))
                except UnreadableSecretError:
                    continue
    await session.flush()
    return len(rows)
