"""Delivering alerts: webhook (signed the Standard Webhooks way), Slack, email; retried with
backoff; every attempt logged on its delivery row. Idempotent: a delivered row is never sent
again, and receivers get the alert's id (`webhook-id`) to drop the rare duplicate a crash
between send and record could cause."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
import uuid
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import httpx
import orjson
from sqlalchemy import select
from sqlmodel import col

from meterflow import netguard, webhook_signing
from meterflow.db import unit_of_work
from meterflow.jobs import JobQueue
from meterflow.models import AlertDelivery, AlertEvent, AlertRule
from meterflow.models.base import utcnow
from meterflow.services import outbox, webhook_payloads
from meterflow.services.alerts import open_channel
from meterflow.services.outbox import Work
from meterflow.workers import failure_log

log = logging.getLogger("meterflow.workers.alerts")
TIMEOUT_SECONDS = 5.0
MAX_ADDRESSES_TRIED = 3


def envelope(event: AlertEvent, rule: AlertRule) -> dict[str, Any]:
    """What an alert webhook receives: the alert as account webhook endpoints get it."""
    return {
        "id": str(event.id),
        "type": "alert.fired",
        "createdAt": event.created_at.isoformat(),
        "data": webhook_payloads.alert(event, rule),
    }


class DeliveryFailure(Exception):
    """A failed attempt, as the delivery log keeps it: a short class (`timeout`, `http_500`,
    `blocked_address`...) and the HTTP status if there was one. Never the answer's body: a
    target must not be able to read anything back through meterflow (SSRF), and the log is
    shown to API callers. `permanent` failures are not retried."""

    def __init__(self, error_class: str, status: int | None = None, *, permanent: bool = False):
        super().__init__(error_class)
        self.error_class = error_class
        self.status = status
        self.permanent = permanent


def _network_error_class(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timeout"
    cause: BaseException | None = exc
    while cause is not None:  # httpx wraps httpcore, which wraps the ssl error
        if isinstance(cause, ssl.SSLError):
            return "tls_error"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError | ConnectionError):
        return "connect_error"
    return "protocol_error"


async def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    resolve: netguard.Resolver = netguard.system_resolver,
    verify: ssl.SSLContext | bool = True,
    timeout: float = TIMEOUT_SECONDS,  # noqa: ASYNC109 (httpx's per-phase timeout, not a deadline)
) -> int:
    """POST to a webhook or Slack target under netguard's rule, checked again now (the name may
    resolve elsewhere than when the rule was made), connecting only to the addresses checked,
    never following a redirect, never reading the answer's body. Returns the 2xx status.
    `timeout` is httpx's, for each phase: connect, write, read (account webhooks use 10 s)."""
    try:
        target, addresses = await netguard.check_target(
            url, allow_private=allow_private, resolve=resolve
        )
    except netguard.TargetRefused as exc:
        # A URL of the wrong form stays wrong; an address or DNS answer may change back.
        raise DeliveryFailure(
            exc.error_class, permanent=exc.error_class == "invalid_target"
        ) from None
    # trust_env=False: a proxy from the environment would connect by name, unchecked.
    async with httpx.AsyncClient(
        timeout=timeout, follow_redirects=False, trust_env=False, verify=verify
    ) as client:
        # Each try may take the whole connect timeout: a few addresses, not every one.
        tried = addresses[:MAX_ADDRESSES_TRIED]
        for i, address in enumerate(tried):
            pinned_url, host, extensions = target.pinned(address)
            request = client.build_request(
                "POST", pinned_url, content=body, headers={**headers, **host}, extensions=extensions
            )
            try:
                response = await client.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if i + 1 < len(tried):
                    continue  # the next checked address of the same host
                raise DeliveryFailure(_network_error_class(exc)) from None
            except httpx.HTTPError as exc:
                raise DeliveryFailure(_network_error_class(exc)) from None
            await response.aclose()  # unread: the body is none of our business
            status = response.status_code
            if 300 <= status < 400:
                raise DeliveryFailure("redirect", status)
            if status >= 300:
                raise DeliveryFailure(f"http_{status}", status)
            return status
    raise AssertionError("netguard returns at least one address")  # pragma: no cover


def _signed(
    delivery: AlertDelivery, rule: AlertRule, event: AlertEvent, body: bytes
) -> dict[str, str]:
    """Standard Webhooks headers over the exact body sent: `webhook-id` is the alert's id (the
    same on every attempt, so receivers drop duplicates), `webhook-timestamp` is now. A channel
    without a valid whsec_ secret (only rules stored before secrets were required) is sent
    without `webhook-signature`, which verifying receivers refuse. Two channels of one URL
    (a delivery row does not say which) get one signature per secret: each verifies."""
    secrets = dict.fromkeys(
        c["secret"]
        for c in rule.channels
        if c["type"] == "WEBHOOK" and c["target"] == delivery.target and c.get("secret")
    )
    valid = [s for s in secrets if webhook_signing.is_valid_secret(s)]
    message_id, timestamp = str(event.id), int(time.time())
    if not valid:
        log.warning(
            "alert delivery %s (%s) has no valid signing secret", delivery.id, _where(delivery)
        )
        return {"webhook-id": message_id, "webhook-timestamp": str(timestamp)}
    return webhook_signing.headers(message_id, timestamp, body, valid)


async def _send(
    ctx: dict[str, Any], delivery: AlertDelivery, rule: AlertRule, event: AlertEvent
) -> int | None:
    """Returns the HTTP status (None for email); raises DeliveryFailure."""
    if delivery.channel == "EMAIL":
        message = EmailMessage()
        message["From"] = ctx["smtp_from"]
        message["To"] = delivery.target
        message["Subject"] = f"[meterflow] {rule.name}"
        message["Message-ID"] = f"<{event.id}@meterflow>"
        message.set_content(event.message)
        try:
            await aiosmtplib.send(
                message, hostname=ctx["smtp_host"], port=ctx["smtp_port"], timeout=TIMEOUT_SECONDS
            )
        except aiosmtplib.SMTPTimeoutError:
            raise DeliveryFailure("timeout") from None
        except aiosmtplib.SMTPConnectError:
            raise DeliveryFailure("connect_error") from None
        except (aiosmtplib.SMTPException, OSError):
            raise DeliveryFailure("smtp_error") from None
        return None
    if delivery.channel == "SLACK":
        body = orjson.dumps({"text": f":rotating_light: {event.message}"})
        headers = {"Content-Type": "application/json"}
    else:
        body = orjson.dumps(envelope(event, rule))
        headers = {"Content-Type": "application/json", **_signed(delivery, rule, event, body)}
    return await post(
        delivery.target,
        body,
        headers,
        allow_private=ctx.get("allow_private_webhook_targets", False),
    )


def _where(delivery: AlertDelivery) -> str:
    """What a log line may say about a target: its host. A Slack URL's path is a credential,
    and an email address is personal data."""
    if delivery.channel == "EMAIL":
        return "email"
    try:
        return f"{delivery.channel.lower()} {httpx.URL(delivery.target).host}"
    except (httpx.InvalidURL, ValueError):
        return delivery.channel.lower()


# Deliveries of one batch run side by side, this many at a time: a slow receiver holds up
# none but its own.
PARALLEL_DELIVERIES = 20


async def deliver_work(
    ctx: dict[str, Any], account: uuid.UUID, works: list[Work]
) -> dict[uuid.UUID, float]:
    """Outbox handler: one attempt at each delivery; those to try again, with their backoff."""
    gate = asyncio.Semaphore(PARALLEL_DELIVERIES)

    async def one(work: Work) -> float | None:
        async with gate:
            return await deliver_alert(ctx, uuid.UUID(work.key))

    delays = await asyncio.gather(*(one(w) for w in works))
    return {w.id: d for w, d in zip(works, delays, strict=True) if d is not None}


async def deliver_alert(ctx: dict[str, Any], delivery_id: uuid.UUID) -> float | None:
    """One attempt, logged on the delivery row. Returns the delay before the next attempt, or
    None when there is nothing more to do (delivered, failed for good, or gone)."""
    factory = ctx["session_factory"]
    async with factory() as session:
        delivery = await session.scalar(
            select(AlertDelivery).where(col(AlertDelivery.id) == delivery_id)
        )
        if delivery is None or delivery.status != "PENDING":
            return None
        event = await session.scalar(
            select(AlertEvent).where(col(AlertEvent.id) == delivery.event_id)
        )
        rule = (
            await session.scalar(select(AlertRule).where(col(AlertRule.id) == event.rule_id))
            if event
            else None
        )
    if event is None or rule is None:
        return None
    status_code: int | None = None
    failure: DeliveryFailure | None = None
    try:
        # Targets and signing secrets are sealed at rest; only the send sees them in clear
        # (on these detached copies, never written back).
        delivery.target = ctx["secret_box"].open(delivery.target)
        rule.channels = [open_channel(ctx["secret_box"], c) for c in rule.channels]
        status_code = await _send(ctx, delivery, rule, event)
    except DeliveryFailure as exc:
        failure, status_code = exc, exc.status
    except Exception:  # a bug of ours, not the receiver's: logged whole, retried
        log.exception("alert delivery %s (%s) raised", delivery.id, _where(delivery))
        failure = DeliveryFailure("internal_error")
    async with unit_of_work(factory) as session:
        row = await session.scalar(
            select(AlertDelivery).where(col(AlertDelivery.id) == delivery.id).with_for_update()
        )
        assert row is not None
        row.attempts += 1
        row.last_status_code = status_code
        row.last_error = failure.error_class if failure else None
        if failure is None:
            row.status, row.delivered_at = "DELIVERED", utcnow()
        elif failure.permanent or row.attempts >= ctx["alert_max_attempts"]:
            row.status = "FAILED"
        attempts, status = row.attempts, row.status
    if failure is None:
        return None
    if status == "PENDING":
        delay: float = ctx["alert_retry_base_seconds"] * 2 ** (attempts - 1)
        failure_log.failing(
            delivery.target,  # a key only: the log line names the host alone
            "alert delivery %s (%s) failed: %s; retry %d in %.1fs",
            delivery.id,
            _where(delivery),
            failure.error_class,
            attempts + 1,
            delay,
        )
        return delay
    failure_log.failing(
        delivery.target,
        "alert delivery %s (%s) failed after %d attempts: %s",
        delivery.id,
        _where(delivery),
        attempts,
        failure.error_class,
    )
    return None


async def dispatch(ctx: dict[str, Any], events: list[AlertEvent]) -> None:
    """After the events committed: have their deliveries done now (they are outbox work of the
    events' transaction, so a lost enqueue only waits for the sweep) and tell subscribers."""
    from meterflow.pubsub import channel, publish

    if not events:
        return
    jobs: JobQueue = ctx["jobs"]
    for account in sorted({e.account_id for e in events}):
        await jobs.run_outbox(account, outbox.DELIVER_ALERT)
        await jobs.run_outbox(account, outbox.DELIVER_WEBHOOK)  # alert.fired, if subscribed
    names = set()
    for event in events:
        names.add(channel(event.account_id, "alert", event.customer_id))
        names.add(channel(event.account_id, "alert", "*"))
    await publish(ctx["redis"], *sorted(names))
