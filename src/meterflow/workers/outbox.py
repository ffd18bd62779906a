"""Doing outbox work: one job per (account, kind) claims batches and hands them to the kind's
handler; a sweep enqueues whatever is due (the fast path after commit was lost, a retry came
due, a worker died holding a lease)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.exceptions import RedisError

from meterflow import logs
from meterflow.db import unit_of_work
from meterflow.jobs import JobQueue
from meterflow.services import outbox
from meterflow.services.outbox import Work
from meterflow.workers import throughput
from meterflow.workers.heartbeat import live_worker_ids

log = logging.getLogger("meterflow.workers.outbox")

# A handler does a batch of one account's work of its kind. It returns, for the items not done
# yet, the delay before their next try; raising means none is done (retried with backoff).
Handler = Callable[[dict[str, Any], uuid.UUID, list[Work]], Awaitable[dict[uuid.UUID, float]]]

BATCH = 500
# A claim lasts this long: longer than any handler's batch takes (deliveries run in parallel,
# each bounded by its HTTP timeouts). A worker that dies frees its claims sooner (the sweep).
LEASE_SECONDS = 120.0
TIME_BUDGET_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 300.0


def backoff(attempts: int) -> float:
    return float(min(MAX_BACKOFF_SECONDS, 2 ** max(attempts - 1, 0)))


async def settle(
    ctx: dict[str, Any], account: uuid.UUID, kind: str, batch: list[Work], handler: Handler
) -> int:
    """Run the handler on a claimed batch and record the outcome. Returns how many are done."""
    error = "internal_error"
    try:
        later = await handler(ctx, account, batch)
    except Exception as exc:
        log.exception("outbox %s for account %s: %d items failed", kind, account, len(batch))
        error = type(exc).__name__
        later = {w.id: backoff(w.attempts) for w in batch}
    async with unit_of_work(ctx["session_factory"]) as session:
        await outbox.complete(session, [w for w in batch if w.id not in later])
        for work in batch:
            if work.id in later:
                await outbox.retry(session, work, delay_seconds=later[work.id], error=error)
    if later:
        jobs: JobQueue = ctx["jobs"]
        await jobs.run_outbox(account, kind, delay=max(min(later.values()), 0.01))
    return len(batch) - len(later)


async def run_outbox(
    ctx: dict[str, Any], account_id: str, kind: str, request_id: str | None = None
) -> int:
    """Do an account's due work of one kind, batch after batch, within a time budget."""
    account = uuid.UUID(account_id)
    logs.bind_job(account_id, request_id)
    handler: Handler | None = ctx["outbox_handlers"].get(kind)
    if handler is None:
        log.error("no handler for outbox work of kind %r", kind)
        return 0
    started, done = time.monotonic(), 0
    while True:
        async with unit_of_work(ctx["session_factory"]) as session:
            batch = await outbox.claim(
                session,
                account_id=account,
                kind=kind,
                worker=ctx["worker_id"],
                limit=BATCH,
                lease_seconds=LEASE_SECONDS,
            )
        if not batch:
            throughput.job_done(ctx)
            return done
        done += await settle(ctx, account, kind, batch, handler)
        if time.monotonic() - started > TIME_BUDGET_SECONDS:
            await ctx["jobs"].run_outbox(account, kind, delay=0.01)  # a fresh job goes on
            throughput.job_done(ctx)
            return done


async def sweep_outbox(ctx: dict[str, Any]) -> int:
    """Enqueue every (account, kind) with due work; free the leases of dead workers first."""
    try:
        live = await live_worker_ids(ctx["redis"])
    except (RedisError, OSError, TimeoutError):
        # Redis went away as this sweep began (the runner says so once): judge no worker
        # dead from nothing, and leave the enqueues to fail quietly until it is back.
        live = set()
    async with unit_of_work(ctx["session_factory"]) as session:
        if ctx["worker_id"] in live:  # never judge others from a partial view
            freed = await outbox.release_dead_claims(session, live_workers=live)
            if freed:
                log.warning("outbox: %d items held by workers that are gone are due again", freed)
        due = await outbox.due(session)
    jobs: JobQueue = ctx["jobs"]
    for account, kind in due:
        await jobs.run_outbox(account, kind)
    return len(due)
