"""Jobs that keep usage rollups fresh: per-account rollup, the sweep that backs it up, and the
outbox work a rollup step causes (re-rating running invoices, judging alert rules)."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from meterflow import logs
from meterflow.db import unit_of_work
from meterflow.jobs import JobQueue, rollup_job_id
from meterflow.pubsub import customer_channels, publish
from meterflow.services import (
    alerts,
    invoice_rating,
    outbox,
    rollup_work,
    rollups,
    top_ups,
    wallet_low,
    webhook_events,
)
from meterflow.services.outbox import Work
from meterflow.workers import throughput
from meterflow.workers.alerts import dispatch
from meterflow.workers.outbox import backoff, run_outbox

log = logging.getLogger("meterflow.workers.rollup")

# One job keeps stepping while events remain, up to this long; then it hands over to a fresh
# job so one busy account cannot hold a worker slot forever.
TIME_BUDGET_SECONDS = 10.0
# While a job catches up on a backlog, the re-rates and alert evaluations its steps recorded
# run this often (and once it has caught up): invoices stay seconds behind usage, not a step.
CAUSED_WORK_SECONDS = 2.0
# The job's own timeout: the budget, one bounded step and its re-rates. A hung job ends within
# this; a job whose worker died is taken over sooner (jobs/runner.py).
JOB_TIMEOUT_SECONDS = 60.0
# Test hook only: seconds to sleep after each committed step, so a fault test can kill a worker
# while its rollup job is part-way. Never set in production.
TEST_HOOK_STEP_PAUSE = "METERFLOW_TEST_HOOK_ROLLUP_STEP_PAUSE_SECONDS"


async def usage_rollup(
    ctx: dict[str, Any],
    account_id: str,
    meter_id: str | None = None,
    request_id: str | None = None,
) -> int:
    """Roll up everything a meter (or each meter of an account) has past its watermark. Safe to
    run twice or concurrently: a meter's steps hold its lock, so two workers share an account's
    meters and never one meter.

    Each step writes, in its own transaction, the work its new usage causes: a re-rate and an
    alert evaluation per touched customer (coalesced with any still pending). The job does that
    work once it has caught up, and every CAUSED_WORK_SECONDS while it catches up on a backlog
    (re-rating every touched customer after each step held the catch-up to the re-rates'
    pace); if it fails, or the worker dies, the rows are still there for the sweep.
    """
    account = uuid.UUID(account_id)
    meter = uuid.UUID(meter_id) if meter_id is not None else None
    logs.bind_job(account_id, request_id)
    jobs: JobQueue = ctx["jobs"]
    pause = float(os.environ.get(TEST_HOOK_STEP_PAUSE, "0") or 0)
    started = last_caused = time.monotonic()
    total = 0
    caused = False  # steps have recorded work not done yet
    while True:
        async with unit_of_work(ctx["session_factory"]) as session:
            step = await rollup_work.rollup_step(
                session,
                account_id=account,
                max_events=ctx.get("rollup_batch_events", 50_000),
                meter_id=meter,
            )
        total += step.events
        if pause:
            await asyncio.sleep(pause)
        caused = caused or bool(step.touched)
        if caused and (
            not step.more
            or time.monotonic() - last_caused >= CAUSED_WORK_SECONDS
            or time.monotonic() - started > TIME_BUDGET_SECONDS
        ):
            await run_caused_work(ctx, account)
            caused, last_caused = False, time.monotonic()
        if not step.more:
            throughput.job_done(ctx, events=total)
            return total
        if time.monotonic() - started > TIME_BUDGET_SECONDS:
            await jobs.enqueue_coalesced(
                "usage_rollup",
                f"{rollup_job_id(account, meter)}:continue:{int(time.time())}",
                account_id,
                meter_id,
            )
            throughput.job_done(ctx, events=total)
            return total


async def run_caused_work(ctx: dict[str, Any], account: uuid.UUID) -> None:
    """Do at once the work rollup steps recorded (re-rate first: COST rules read the invoice).
    A failing re-rate never holds back the evaluation: each kind is its own outbox work, and
    whatever fails stays in the outbox for the sweep."""
    for kind in rollup_work.CAUSED_KINDS:
        try:
            await run_outbox(ctx, str(account), kind)
        except Exception:
            log.exception("%s for account %s failed; the sweep retries it", kind, account)


async def rerate_work(
    ctx: dict[str, Any], account: uuid.UUID, works: list[Work]
) -> dict[uuid.UUID, float]:
    """Outbox handler: bring these customers' running invoices up to date, in one batch; if the
    batch fails, one by one, so that one customer's trouble holds back no other."""
    try:
        await rerate_customers(ctx, str(account), sorted(w.key for w in works))
        return {}
    except Exception:
        log.exception("re-rating %d customers failed; retrying one by one", len(works))
    later = {}
    for work in works:
        try:
            await rerate_customers(ctx, str(account), [work.key])
        except Exception:
            log.exception("re-rating customer %s failed", work.key)
            later[work.id] = backoff(work.attempts)
    return later


async def evaluate_work(
    ctx: dict[str, Any], account: uuid.UUID, works: list[Work]
) -> dict[uuid.UUID, float]:
    """Outbox handler: judge the mid-period alert rules for these customers."""
    await evaluate_alerts(ctx, account, sorted(w.key for w in works))
    return {}


async def evaluate_alerts(ctx: dict[str, Any], account: uuid.UUID, customers: list[str]) -> None:
    """Seconds after the events: rules that can be judged mid-period, for these customers.
    The deliveries of what fires are outbox work of the same transaction (services/alerts)."""
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
    """Bring these customers' running invoices up to date, then tell their subscribers. COST
    rules read those invoices: they are judged again (outbox work of the same transaction)."""
    if not customers:
        return
    account = uuid.UUID(account_id)
    now = datetime.now(UTC)
    async with unit_of_work(ctx["session_factory"]) as session:
        await invoice_rating.rerate_customers(
            session, account_id=account, customer_ids=customers, now=now
        )
        await wallet_low.check(session, account_id=account, customer_ids=customers, now=now)
        # Wallets the re-rate drew below their automatic top-up threshold buy more (one
        # pending top-up per wallet, whatever else runs at the same time).
        started = await top_ups.start_due(
            session,
            account_id=account,
            customer_ids=customers,
            now=now,
            retry_after=timedelta(seconds=ctx.get("top_up_retry_seconds", 3600.0)),
        )
        await outbox.add(
            session,
            account_id=account,
            kind=outbox.EVALUATE_ALERTS,
            items={customer: {} for customer in customers},
        )
    if started:
        await ctx["jobs"].run_outbox(account, outbox.SYNC_TOP_UP)
    if webhook_events.written(session):
        await ctx["jobs"].run_outbox(account, outbox.DELIVER_WEBHOOK)
    await publish(
        ctx["redis"], *(c for customer in customers for c in customer_channels(account, customer))
    )


async def sweep_rollups(ctx: dict[str, Any]) -> int:
    """Find meters whose watermark lags (a lost enqueue, a Redis outage) and roll them up."""
    async with ctx["session_factory"]() as session:
        lagging = await rollups.lagging_meters(session)
    jobs: JobQueue = ctx["jobs"]
    by_account: dict[uuid.UUID, list[uuid.UUID]] = {}
    for account, meter in lagging:
        by_account.setdefault(account, []).append(meter)
    for account, meters in by_account.items():
        await jobs.request_rollup(account, meters)
    throughput.accounts_behind(ctx, len(by_account))
    if lagging:
        log.debug("sweep: %d meters had un-rolled events", len(lagging))
    return len(by_account)
