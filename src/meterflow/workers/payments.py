"""Outbox handlers that talk to Stripe: send finalized invoices, send (and charge) top-ups.

A try that fails on a connection error, a 5xx, a 429 or an idempotency conflict is retried
with the outbox's backoff; one Stripe refuses (a card or request error) is recorded on the
payment or top-up and not retried. Either way the error is kept for operators.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from meterflow.payments.gateway import PaymentError
from meterflow.pubsub import customer_channels, publish
from meterflow.services import payment_sync
from meterflow.services.outbox import Work
from meterflow.services.payment_sync import StripeSync
from meterflow.workers.outbox import backoff

log = logging.getLogger("meterflow.workers.payments")

# Test hook only: the name of a sync step ("customer", "invoice", "item:0", "finalize") after
# which the worker pauses, so a fault test can kill it with -9 between two Stripe calls. Never
# set in production.
TEST_HOOK_PAUSE_AFTER = "METERFLOW_TEST_HOOK_STRIPE_PAUSE_AFTER"


def _clock() -> datetime:
    return datetime.now(UTC)


async def _pause_for_a_fault_test(step: str) -> None:
    if step == os.environ.get(TEST_HOOK_PAUSE_AFTER):
        log.warning("test hook: pausing after the Stripe step %s", step)
        await asyncio.sleep(120)


def stripe_sync(ctx: dict[str, Any]) -> StripeSync:
    hook = ctx.get("stripe_after_step")
    if hook is None and os.environ.get(TEST_HOOK_PAUSE_AFTER):
        hook = _pause_for_a_fault_test
    return StripeSync(
        box=ctx["secret_box"], clock=_clock, api_base=ctx.get("stripe_api_base"), after_step=hook
    )


Sync = Callable[..., Awaitable[str | None]]
Record = Callable[..., Awaitable[None]]


async def _each(
    ctx: dict[str, Any],
    account: uuid.UUID,
    works: list[Work],
    what: str,
    sync: Sync,
    record: Record,
) -> dict[uuid.UUID, float]:
    """Send each item; a retryable failure comes back after the outbox's backoff."""
    factory = ctx["session_factory"]
    later: dict[uuid.UUID, float] = {}
    for work in works:
        row_id = uuid.UUID(work.key)
        try:
            customer = await sync(factory, stripe_sync(ctx), account_id=account, **{what: row_id})
        except PaymentError as exc:
            log.warning("%s %s to Stripe: %s (retry: %s)", what, row_id, exc, exc.retryable)
            await record(factory, account_id=account, error=exc, now=_clock(), **{what: row_id})
            if exc.retryable:
                later[work.id] = backoff(work.attempts)
            continue
        if customer is not None:
            await publish(ctx["redis"], *customer_channels(account, customer))
    return later


async def sync_invoice_work(
    ctx: dict[str, Any], account: uuid.UUID, works: list[Work]
) -> dict[uuid.UUID, float]:
    return await _each(
        ctx,
        account,
        works,
        "invoice_id",
        payment_sync.sync_invoice,
        payment_sync.record_invoice_error,
    )


async def sync_top_up_work(
    ctx: dict[str, Any], account: uuid.UUID, works: list[Work]
) -> dict[uuid.UUID, float]:
    return await _each(
        ctx,
        account,
        works,
        "top_up_id",
        payment_sync.sync_top_up,
        payment_sync.record_top_up_error,
    )
