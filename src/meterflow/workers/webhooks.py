"""Delivering the account's billing events to its webhook endpoints, the Standard Webhooks way:
body `{id, type, createdAt, data}`, headers `webhook-id` (the event id, the same on every
attempt and on a replay), `webhook-timestamp`, `webhook-signature` (one per live secret).

Each attempt goes through netguard (public https, resolved and pinned, no redirects, the answer
never read) with a 10 s timeout, and is logged on the delivery: status code, duration, error
class. A failure is retried with exponential backoff from `webhook_retry_base_seconds`, for
`webhook_retry_window_seconds` (3 days); an endpoint whose deliveries have failed for that long
without one success is disabled, and `webhook_endpoint.disabled` is recorded.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import select
from sqlmodel import col

from meterflow import webhook_signing
from meterflow.db import unit_of_work
from meterflow.models import WebhookDelivery, WebhookEndpoint, WebhookEvent
from meterflow.services import webhook_endpoints, webhook_events, webhook_payloads
from meterflow.services.outbox import Work
from meterflow.workers.alerts import DeliveryFailure, post

log = logging.getLogger("meterflow.workers.webhooks")

TIMEOUT_SECONDS = 10.0
PARALLEL = 20
MAX_DELAY_SECONDS = 10 * 3600.0
DEFAULT_WINDOW_SECONDS = 3 * 24 * 3600.0


def body_of(event: WebhookEvent) -> bytes:
    return orjson.dumps(
        {
            "id": str(event.id),
            "type": event.type,
            "createdAt": event.created_at.isoformat(),
            "data": event.data,
        }
    )


def retry_delay(base: float, attempts: int) -> float:
    return min(MAX_DELAY_SECONDS, base * 2 ** max(attempts - 1, 0))


async def deliver_work(
    ctx: dict[str, Any], account: uuid.UUID, works: list[Work]
) -> dict[uuid.UUID, float]:
    """Outbox handler: one attempt at each delivery; those to try again, with their delay."""
    gate = asyncio.Semaphore(PARALLEL)

    async def one(work: Work) -> float | None:
        async with gate:
            return await deliver(ctx, account, uuid.UUID(work.key))

    delays = await asyncio.gather(*(one(w) for w in works))
    return {w.id: d for w, d in zip(works, delays, strict=True) if d is not None}


async def deliver(ctx: dict[str, Any], account: uuid.UUID, delivery_id: uuid.UUID) -> float | None:
    """One attempt. Returns the delay before the next, or None when nothing more is to do."""
    factory = ctx["session_factory"]
    now = datetime.now(UTC)
    async with factory() as session:
        delivery = await session.scalar(
            select(WebhookDelivery).where(
                col(WebhookDelivery.account_id) == account, col(WebhookDelivery.id) == delivery_id
            )
        )
        if delivery is None or delivery.status != "PENDING":
            return None
        event = await session.scalar(
            select(WebhookEvent).where(
                col(WebhookEvent.account_id) == account, col(WebhookEvent.id) == delivery.event_id
            )
        )
        endpoint = await session.scalar(
            select(WebhookEndpoint).where(
                col(WebhookEndpoint.account_id) == account,
                col(WebhookEndpoint.id) == delivery.endpoint_id,
            )
        )
    failure: DeliveryFailure | None = None
    status_code: int | None = None
    started = time.monotonic()
    if event is None or endpoint is None:
        failure = DeliveryFailure("endpoint_deleted", permanent=True)
    elif not endpoint.enabled:
        failure = DeliveryFailure("endpoint_disabled", permanent=True)
    else:
        box = ctx["secret_box"]
        body = body_of(event)
        try:
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "meterflow-webhooks/1",
                **webhook_signing.headers(
                    str(event.id),
                    int(now.timestamp()),
                    body,
                    webhook_endpoints.signing_secrets(endpoint, box, now),
                ),
            }
            status_code = await post(
                box.open(endpoint.url),
                body,
                headers,
                allow_private=ctx.get("allow_private_webhook_targets", False),
                timeout=TIMEOUT_SECONDS,
            )
        except DeliveryFailure as exc:
            failure, status_code = exc, exc.status
        except Exception:  # ours, not the receiver's: logged whole, retried
            log.exception("webhook delivery %s raised", delivery_id)
            failure = DeliveryFailure("internal_error")
    duration_ms = int((time.monotonic() - started) * 1000)
    return await _record(ctx, account, delivery_id, now, status_code, duration_ms, failure)


async def _record(
    ctx: dict[str, Any],
    account: uuid.UUID,
    delivery_id: uuid.UUID,
    now: datetime,
    status_code: int | None,
    duration_ms: int,
    failure: DeliveryFailure | None,
) -> float | None:
    window = timedelta(seconds=ctx.get("webhook_retry_window_seconds", DEFAULT_WINDOW_SECONDS))
    async with unit_of_work(ctx["session_factory"]) as session:
        row = await session.scalar(
            select(WebhookDelivery)
            .where(
                col(WebhookDelivery.account_id) == account, col(WebhookDelivery.id) == delivery_id
            )
            .with_for_update()
        )
        if row is None or row.status != "PENDING":
            return None
        row.attempt_count += 1
        row.attempts = [
            *row.attempts,
            {
                "at": now.isoformat(),
                "statusCode": status_code,
                "durationMs": duration_ms,
                "error": failure.error_class if failure else None,
            },
        ][-50:]
        row.last_status_code = status_code
        row.last_error = failure.error_class if failure else None
        row.updated_at = now
        endpoint = await session.scalar(
            select(WebhookEndpoint)
            .where(
                col(WebhookEndpoint.account_id) == account,
                col(WebhookEndpoint.id) == row.endpoint_id,
            )
            .with_for_update()
        )
        if failure is None:
            row.status, row.delivered_at = "DELIVERED", now
            if endpoint is not None:
                endpoint.failing_since = None
            return None
        if failure.permanent or now - row.created_at >= window:
            row.status = "FAILED"
        if (
            endpoint is not None
            and endpoint.enabled
            and failure.error_class
            not in (
                "endpoint_deleted",
                "endpoint_disabled",
            )
        ):
            endpoint.failing_since = endpoint.failing_since or now
            if now - endpoint.failing_since >= window:
                endpoint.enabled = False
                endpoint.disabled_at = endpoint.updated_at = now
                webhook_events.forget_endpoints(session, account)
                await webhook_events.emit(
                    session,
                    account_id=account,
                    events=[
                        webhook_events.Event(
                            "webhook_endpoint.disabled",
                            {"webhookEndpoint": webhook_payloads.endpoint(endpoint)},
                        )
                    ],
                    now=now,
                )
                log.warning(
                    "webhook endpoint %s disabled: its deliveries failed for %s",
                    endpoint.id,
                    window,
                )
        if row.status == "FAILED":
            return None
        attempts = row.attempt_count
    return retry_delay(ctx.get("webhook_retry_base_seconds", 5.0), attempts)
