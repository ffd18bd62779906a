"""Billing events for the account's webhook endpoints, written in the transaction of the change
that causes them: an event row, a delivery per subscribed endpoint, and the deliveries as
outbox work. A change that rolls back takes its events with it; one that commits cannot lose
them (the outbox's sweep sends what a lost enqueue did not).

Nothing is written when no enabled endpoint subscribes to the type: the hot paths (customers
created by their first event, every re-rate) pay one cached lookup per transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from meterflow.services import outbox

EVENT_TYPES = (
    "customer.created",
    "customer.updated",
    "meter.activated",
    "meter.deprecated",
    "plan.activated",
    "plan.assigned",
    "invoice.created",
    "invoice.updated",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
    "credits.granted",
    "wallet.balance_low",
    "wallet.topped_up",
    "alert.fired",
    "webhook_endpoint.disabled",
)
# Sent only to endpoints that name them: "*" does not include them (invoice.updated may fire
# once a minute per open invoice).
OPT_IN = frozenset({"invoice.updated"})
INVOICE_UPDATED_EVERY = timedelta(minutes=1)

_CACHE = "meterflow.webhook_endpoints"
_WRITTEN = "meterflow.webhook_deliveries_written"


@dataclass(frozen=True)
class Event:
    type: str
    data: dict[str, Any]
    subject: str | None = None


def subscribes(event_types: Sequence[str], event_type: str) -> bool:
    if event_type in event_types:
        return True
    return "*" in event_types and event_type not in OPT_IN


async def _endpoints(
    session: AsyncSession, account_id: uuid.UUID
) -> list[tuple[uuid.UUID, list[str]]]:
    """The account's enabled endpoints (id, event types), read once per transaction: the
    session's own dictionary lives exactly as long as the unit of work."""
    cache: dict[uuid.UUID, list[tuple[uuid.UUID, list[str]]]] = session.info.setdefault(_CACHE, {})
    if account_id not in cache:
        rows = await session.execute(
            select(col(WebhookEndpoint.id), col(WebhookEndpoint.event_types)).where(
                col(WebhookEndpoint.account_id) == account_id,
                col(WebhookEndpoint.enabled).is_(True),
            )
        )
        cache[account_id] = [(row[0], list(row[1])) for row in rows]
    return cache[account_id]


def forget_endpoints(session: AsyncSession, account_id: uuid.UUID) -> None:
    """An endpoint changed in this transaction: the next emit reads them again."""
    session.info.get(_CACHE, {}).pop(account_id, None)


async def wanted(session: AsyncSession, *, account_id: uuid.UUID, event_type: str) -> bool:
    """Whether any enabled endpoint would receive this type (to skip building its data)."""
    return any(subscribes(types, event_type) for _, types in await _endpoints(session, account_id))


async def notify(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    event_type: str,
    build: Callable[[], Sequence[tuple[dict[str, Any], str | None]]],
    now: datetime,
) -> int:
    """Emit events of one type, building their data (data, subject) only when some endpoint
    subscribes: the common case, no endpoint, costs one cached lookup."""
    if not await wanted(session, account_id=account_id, event_type=event_type):
        return 0
    events = [Event(event_type, data, subject) for data, subject in build()]
    return await emit(session, account_id=account_id, events=events, now=now)


async def emit(
    session: AsyncSession, *, account_id: uuid.UUID, events: Sequence[Event], now: datetime
) -> int:
    """Record events and their deliveries in the caller's transaction. Returns how many
    deliveries were written."""
    endpoints = await _endpoints(session, account_id)
    if not endpoints or not events:
        return 0
    event_rows: list[dict[str, Any]] = []
    delivery_rows: list[dict[str, Any]] = []
    for event in events:
        targets = [e for e, types in endpoints if subscribes(types, event.type)]
        if not targets:
            continue
        throttled = event.type == "invoice.updated" and event.subject is not None
        if throttled and await _recently(session, account_id, str(event.subject), now):
            continue
        event_id = uuid.uuid4()
        event_rows.append(
            {
                "account_id": account_id,
                "id": event_id,
                "type": event.type,
                "subject": event.subject,
                "data": event.data,
                "created_at": now,
            }
        )
        for endpoint_id in targets:
            delivery_rows.append(
                {
                    "account_id": account_id,
                    "id": uuid.uuid4(),
                    "endpoint_id": endpoint_id,
                    "event_id": event_id,
                    "status": "PENDING",
                    "attempt_count": 0,
                    "attempts": [],
                    "created_at": now,
                    "updated_at": now,
                }
            )
    if not delivery_rows:
        return 0
    await session.execute(insert(WebhookEvent).values(event_rows))
    await session.execute(insert(WebhookDelivery).values(delivery_rows))
    await outbox.add(
        session,
        account_id=account_id,
        kind=outbox.DELIVER_WEBHOOK,
        items={str(row["id"]): {} for row in delivery_rows},
    )
    session.info.setdefault(_WRITTEN, set()).add(account_id)
    return len(delivery_rows)


def written(session: AsyncSession) -> set[uuid.UUID]:
    """Accounts this unit of work wrote deliveries for: after its commit, the caller may start
    them at once (else the outbox sweep does, within seconds)."""
    return set(session.info.get(_WRITTEN, ()))


async def _recently(
    session: AsyncSession, account_id: uuid.UUID, subject: str, now: datetime
) -> bool:
    """An invoice.updated for this invoice within the last minute (at most one a minute)."""
    found = await session.scalar(
        select(col(WebhookEvent.id))
        .where(
            col(WebhookEvent.account_id) == account_id,
            col(WebhookEvent.type) == "invoice.updated",
            col(WebhookEvent.subject) == subject,
            col(WebhookEvent.created_at) > now - INVOICE_UPDATED_EVERY,
        )
        .limit(1)
    )
    return found is not None
