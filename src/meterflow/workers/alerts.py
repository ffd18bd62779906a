"""Delivering alerts: webhook (signed), Slack, email; retried with backoff; every attempt
logged on its delivery row. Idempotent: a delivered row is never sent again, and receivers get
the alert's id to drop the rare duplicate a crash between send and record could cause."""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import uuid
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import orjson
from sqlalchemy import select
from sqlmodel import col

from meterflow.db import unit_of_work
from meterflow.jobs import DELIVER_JOB, JobQueue
from meterflow.models import AlertDelivery, AlertEvent, AlertRule
from meterflow.models.base import utcnow
from meterflow.services.alerts import open_channel

log = logging.getLogger("meterflow.workers.alerts")
TIMEOUT_SECONDS = 5.0


def envelope(event: AlertEvent, rule: AlertRule) -> dict[str, Any]:
    return {
        "id": str(event.id),
        "type": "alert.fired",
        "createdAt": event.created_at.isoformat(),
        "data": {
            "ruleId": str(rule.id),
            "ruleName": rule.name,
            "subject": rule.subject,
            "condition": rule.condition,
            "threshold": str(rule.threshold),
            "range": rule.range,
            "customerId": event.customer_id,
            "periodStart": event.period_start.isoformat(),
            "value": str(event.value),
            "message": event.message,
        },
    }


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`: receivers recompute it and reject old t."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


async def _send(
    ctx: dict[str, Any], delivery: AlertDelivery, rule: AlertRule, event: AlertEvent
) -> int | None:
    """Returns the HTTP status (None for email); raises on failure."""
    if delivery.channel == "EMAIL":
        message = EmailMessage()
        message["From"] = ctx["smtp_from"]
        message["To"] = delivery.target
        message["Subject"] = f"[meterflow] {rule.name}"
        message["Message-ID"] = f"<{event.id}@meterflow>"
        message.set_content(event.message)
        await aiosmtplib.send(
            message, hostname=ctx["smtp_host"], port=ctx["smtp_port"], timeout=TIMEOUT_SECONDS
        )
        return None
    if delivery.channel == "SLACK":
        body = orjson.dumps({"text": f":rotating_light: {event.message}"})
        headers = {"Content-Type": "application/json"}
    else:
        body = orjson.dumps(envelope(event, rule))
        headers = {"Content-Type": "application/json", "Meterflow-Event-Id": str(event.id)}
        secret = next(
            (
                c.get("secret")
                for c in rule.channels
                if c["type"] == "WEBHOOK" and c["target"] == delivery.target
            ),
            None,
        )
        if secret:
            headers["Meterflow-Signature"] = signature(secret, int(time.time()), body)
    async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
        response = await client.post(delivery.target, content=body, headers=headers)
    if response.status_code >= 300:
        raise DeliveryError(response.status_code, response.text[:200])
    return response.status_code


class DeliveryError(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"HTTP {status}: {text}")
        self.status = status


async def deliver_alert(ctx: dict[str, Any], delivery_id: str) -> str:
    factory = ctx["session_factory"]
    async with factory() as session:
        delivery = await session.scalar(
            select(AlertDelivery).where(col(AlertDelivery.id) == uuid.UUID(delivery_id))
        )
        if delivery is None or delivery.status != "PENDING":
            return delivery.status if delivery else "MISSING"
        event = await session.scalar(
            select(AlertEvent).where(col(AlertEvent.id) == delivery.event_id)
        )
        rule = (
            await session.scalar(select(AlertRule).where(col(AlertRule.id) == event.rule_id))
            if event
            else None
        )
    if event is None or rule is None:
        return "MISSING"
    status_code: int | None = None
    error: str | None = None
    try:
        # Targets and signing secrets are sealed at rest; only the send sees them in clear
        # (on these detached copies, never written back).
        delivery.target = ctx["secret_box"].open(delivery.target)
        rule.channels = [open_channel(ctx["secret_box"], c) for c in rule.channels]
        status_code = await _send(ctx, delivery, rule, event)
    except DeliveryError as exc:
        status_code, error = exc.status, str(exc)
    except Exception as exc:  # network, SMTP: the receiver's problem, retried
        error = f"{type(exc).__name__}: {exc}"
    async with unit_of_work(factory) as session:
        row = await session.scalar(
            select(AlertDelivery).where(col(AlertDelivery.id) == delivery.id).with_for_update()
        )
        assert row is not None
        row.attempts += 1
        row.last_status_code = status_code
        row.last_error = error
        if error is None:
            row.status, row.delivered_at = "DELIVERED", utcnow()
        elif row.attempts >= ctx["alert_max_attempts"]:
            row.status = "FAILED"
        attempts, status = row.attempts, row.status
    if status == "PENDING":
        jobs: JobQueue = ctx["jobs"]
        delay = ctx["alert_retry_base_seconds"] * 2 ** (attempts - 1)
        await jobs.enqueue_later(
            DELIVER_JOB, f"deliver:{delivery.id}:{attempts}", delay, str(delivery.id)
        )
        log.info(
            "alert delivery %s failed (%s); retry %d in %.1fs",
            delivery.id,
            error,
            attempts + 1,
            delay,
        )
    return status


async def dispatch(ctx: dict[str, Any], events: list[AlertEvent]) -> None:
    """After the events committed: queue their deliveries and tell subscribers."""
    from meterflow.pubsub import channel, publish

    if not events:
        return
    factory = ctx["session_factory"]
    async with factory() as session:
        rows = list(
            await session.scalars(
                select(AlertDelivery).where(col(AlertDelivery.event_id).in_([e.id for e in events]))
            )
        )
    jobs: JobQueue = ctx["jobs"]
    for row in rows:
        await jobs.enqueue_coalesced(DELIVER_JOB, f"deliver:{row.id}:0", str(row.id))
    names = set()
    for event in events:
        names.add(channel(event.account_id, "alert", event.customer_id))
        names.add(channel(event.account_id, "alert", "*"))
    await publish(ctx["redis"], *sorted(names))
