"""Jobs that keep usage rollups fresh: per-account rollup, and the sweep that backs it up."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from meterflow.db import unit_of_work
from meterflow.jobs import RERATE_JOB, JobQueue
from meterflow.pubsub import customer_channels, publish
from meterflow.services import alerts, invoice_rating, rollups
from meterflow.workers.alerts import dispatch

log = logging.getLogger("meterflow.workers.rollup")

# One job keeps stepping while events remain, up to this long; then it hands over to a fresh
# job so one busy account cannot hold a worker slot forever.
TIME_BUDGET_SECONDS = 10.0


async def usage_rollup(ctx: dict[str, Any], account_id: str) -> int:
    """Roll up everything an account has past its watermark. Safe to run twice or concurrently."""
    account = uuid.UUID(account_id)
    jobs: JobQueue = ctx["jobs"]
    started = time.monotonic()
    total = 0
    while True:
        async with unit_of_work(ctx["session_factory"]) as session:
            step = await rollups.rollup_account(
                session, account_id=account, max_events=ctx.get("rollup_batch_events", 50_000)
            )
        total += step.events
        # Running invoices follow usage: re-rate every customer this step touched, in one batch.
        # The usage is committed already, so a failure here must not be lost: each customer then
        # becomes a retried job of its own.
        touched = sorted({customer for _, customer in step.touched})
        try:
            await rerate_customers(ctx, account_id, touched)
            await evaluate_alerts(ctx, account, touched)
        except Exception:
            log.exception("re-rating %d customers failed; retrying one by one", len(touched))
            for customer_id in touched:
                await jobs.enqueue_coalesced(
                    RERATE_JOB, f"rerate:{account}:{customer_id}", account_id, customer_id
                )
        if not step.more:
            return total
        if time.monotonic() - started > TIME_BUDGET_SECONDS:
            await jobs.enqueue_coalesced(
                "usage_rollup", f"rollup:{account}:continue:{int(time.time())}", account_id
            )
            return total


async def evaluate_alerts(ctx: dict[str, Any], account: uuid.UUID, customers: list[str]) -> None:
    """Seconds after the events: rules that can be judged mid-period, for these customers."""
    if not customers:
        return
    async with unit_of_work(ctx["session_factory"]) as session:
        fired = await alerts.evaluate(
            session, account_id=account, customers=customers, now=datetime.now(UTC)
        )
    await dispatch(ctx, fired)


async def alert_period_ends(ctx: dict[str, Any]) -> int:
    """Percentage-change rules, judged on the period that just ended: one account per short
    transaction, so no tenant waits on another and one account's failure (logged) leaves the
    others judged. Idempotent: an alert fires once per rule, customer and period."""
    now = datetime.now(UTC)
    async with ctx["session_factory"]() as session:
        accounts = await alerts.accounts_with_period_rules(session)
    fired = 0
    for account in accounts:
        try:
            async with unit_of_work(ctx["session_factory"]) as session:
                events = await alerts.evaluate_period_ends(session, account_id=account, now=now)
            fired += len(events)
            await dispatch(ctx, events)
        except Exception:
            log.exception("alerts at period end: account %s failed; the others go on", account)
    return fired


async def rerate_customers(ctx: dict[str, Any], account_id: str, customers: list[str]) -> None:
    """Bring these customers' running invoices up to date, then tell their subscribers."""
    if not customers:
        return
    account = uuid.UUID(account_id)
    async with unit_of_work(ctx["session_factory"]) as session:
        await invoice_rating.rerate_customers(
            session, account_id=account, customer_ids=customers, now=datetime.now(UTC)
        )
    await publish(
        ctx["redis"], *(c for customer in customers for c in customer_channels(account, customer))
    )


async def rerate_customer(ctx: dict[str, Any], account_id: str, customer_id: str) -> None:
    """Bring one customer's running invoices up to date, then tell its subscribers."""
    account = uuid.UUID(account_id)
    async with unit_of_work(ctx["session_factory"]) as session:
        await invoice_rating.rerate_customer(
            session, account_id=account, customer_id=customer_id, now=datetime.now(UTC)
        )
    await publish(ctx["redis"], *customer_channels(account, customer_id))


async def sweep_rollups(ctx: dict[str, Any]) -> int:
    """Find accounts whose watermark lags (a lost enqueue, a Redis outage) and roll them up."""
    async with ctx["session_factory"]() as session:
        lagging = await rollups.lagging_accounts(session)
    jobs: JobQueue = ctx["jobs"]
    for account in lagging:
        await jobs.request_rollup(account)
    if lagging:
        log.info("sweep: %d accounts had un-rolled events", len(lagging))
    return len(lagging)
