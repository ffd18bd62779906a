"""The worker side of the arq seam: job and schedule declarations, a worker that outlives
Redis outages, and the take-over of jobs whose worker died.

Why a take-over: arq marks a running job with `arq:in-progress:<job id>`, kept for the longest
job timeout + 10 s, and no worker starts a job while that key exists. A worker killed with -9
leaves the key behind, and a deterministic id (`rollup:<account>`) then blocks that account's
rollups until it expires. So every job records which worker runs it (`OWNERS_KEY`), and
`release_orphans` deletes the in-progress keys of workers whose heartbeat is gone: the job,
still queued, is picked up again within a poll. Jobs are idempotent, so even a worker that was
merely slow and is wrongly taken over only causes a harmless second run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from arq import cron
from arq.constants import in_progress_key_prefix
from arq.typing import WorkerCoroutine
from arq.worker import Worker, func
from redis.asyncio import Redis
from redis.exceptions import RedisError

from meterflow.jobs import redis_settings

log = logging.getLogger("meterflow.jobs")

OWNERS_KEY = "mf:jobs:owners"  # hash: job id -> id of the worker running it
OUTAGE_BACKOFF_FIRST = 0.25
OUTAGE_BACKOFF_MAX = 2.0

Hook = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(frozen=True)
class JobSpec:
    """A job function `async def f(ctx, *args)`. `timeout_seconds` bounds one run."""

    function: Callable[..., Awaitable[Any]]
    name: str
    timeout_seconds: float
    max_tries: int = 5


@dataclass(frozen=True)
class Schedule:
    """A job run by the clock (once across all workers), at these seconds of these minutes."""

    function: Callable[..., Awaitable[Any]]
    name: str
    timeout_seconds: float
    second: frozenset[int]
    minute: frozenset[int] | None = None
    run_at_startup: bool = False


class JobRunner(Worker):
    """arq's worker, which outlives Redis: arq lets a connection error escape its poll loop
    and the process exits; here the loop waits with backoff, says so once, and carries on."""

    def __init__(self, *, worker_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.worker_id = worker_id
        self._outage_since: float | None = None
        self._backoff = OUTAGE_BACKOFF_FIRST

    async def main(self) -> None:
        """A worker started before Redis waits for it (arq gives up after a few seconds)."""
        while True:
            try:
                await super().main()
                return
            except (RedisError, OSError) as exc:
                if "redis" in self.ctx:  # started: the poll loop handles outages from here
                    raise
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    log.warning(
                        "Redis unreachable at start (%s): waiting for it", type(exc).__name__
                    )
                self._pool = None
                await asyncio.sleep(OUTAGE_BACKOFF_MAX)

    def _reap(self) -> None:
        """Collect finished jobs before arq does: one whose bookkeeping in Redis failed (its
        work is done or redone by a sweep; arq would raise that error out of the poll loop)
        is noted, not fatal."""
        for job_id, task in list(self.tasks.items()):
            if not task.done():
                continue
            del self.tasks[job_id]
            exc = None if task.cancelled() else task.exception()
            if isinstance(exc, RedisError | OSError):
                log.info("job %s: Redis failed around it (%s)", job_id, type(exc).__name__)
            elif exc is not None:
                raise exc

    async def _poll_iteration(self) -> None:
        try:
            self._reap()
            await super()._poll_iteration()
        except (RedisError, OSError) as exc:
            if self._outage_since is None:
                self._outage_since = time.monotonic()
                log.warning(
                    "Redis unreachable (%s): the worker keeps running and reconnects by itself",
                    type(exc).__name__,
                )
            await asyncio.sleep(self._backoff)
            self._backoff = min(self._backoff * 2, OUTAGE_BACKOFF_MAX)
            return
        if self._outage_since is not None:
            log.warning(
                "Redis is back after %.1f s: the worker resumes",
                time.monotonic() - self._outage_since,
            )
            self._outage_since, self._backoff = None, OUTAGE_BACKOFF_FIRST

    async def start_jobs(self, job_ids: list[bytes]) -> None:
        # arq counts a job as started before its Redis round trip; if that trip fails, the
        # slot would stay taken for good. Give it back.
        for job_id in job_ids:
            counted = self.job_counter
            try:
                await super().start_jobs([job_id])
            except (RedisError, OSError):
                if self.job_counter > counted:
                    self.job_counter -= 1
                    self.sem.release()
                raise

    async def close(self) -> None:
        """arq's close, with two differences. A job cancelled by the stop in its start hook
        (outside arq's own cancellation handling) made arq's close raise CancelledError, and the
        process exit 1 with a traceback: here every job's end is awaited whatever it was (a
        cancelled job is still queued; the next worker runs it). And stopping while Redis is
        away still runs the shutdown hook (the database pool is closed either way)."""
        if not self._handle_signals:  # in-process (meterflow dev): cancel the running jobs
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        try:
            await self.pool.delete(self.health_check_key)
        except (RedisError, OSError) as exc:  # stopping while Redis is away: nothing to tidy
            log.warning("worker stopped without Redis (%s)", type(exc).__name__)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        with contextlib.suppress(RedisError, OSError):
            await self.pool.close(close_connection_pool=True)
        self._pool = None


def build_runner(
    *,
    jobs: list[JobSpec],
    schedules: list[Schedule],
    redis_url: str,
    worker_id: str,
    on_startup: Hook,
    on_shutdown: Hook,
    handle_signals: bool = True,
    burst: bool = False,
    max_jobs: int = 20,
) -> JobRunner:
    async def started(ctx: dict[str, Any]) -> None:
        # Without an owner the job is never taken over: arq's own expiry applies.
        with contextlib.suppress(RedisError, OSError):
            await ctx["redis"].hset(OWNERS_KEY, ctx["job_id"], worker_id)

    async def ended(ctx: dict[str, Any]) -> None:
        with contextlib.suppress(RedisError, OSError):
            await ctx["redis"].hdel(OWNERS_KEY, ctx["job_id"])

    return JobRunner(
        worker_id=worker_id,
        functions=[
            # keep_result=0 frees a deterministic job id at once, so the next burst can enqueue.
            func(
                cast(WorkerCoroutine, j.function),
                name=j.name,
                keep_result=0,
                max_tries=j.max_tries,
                timeout=j.timeout_seconds,
            )
            for j in jobs
        ],
        cron_jobs=[
            cron(
                cast(WorkerCoroutine, s.function),
                name=s.name,
                second=set(s.second),
                minute=set(s.minute) if s.minute is not None else None,
                run_at_startup=s.run_at_startup,
                timeout=s.timeout_seconds,
                keep_result=0,
                unique=True,
            )
            for s in schedules
        ],
        # No arq retries at start (a warning a second): main() waits for Redis, saying so once.
        redis_settings=redis_settings(redis_url, retries=0),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        on_job_start=started,
        after_job_end=ended,
        handle_signals=handle_signals,
        burst=burst,
        keep_result=0,
        max_jobs=max_jobs,
        # Freshness: a queued job starts within ~50 ms, not arq's default 0.5 s.
        poll_delay=0.05,
    )


async def release_orphans(redis: Redis, live_workers: set[str]) -> list[str]:
    """Free the jobs whose worker is gone (see the module's docstring). Returns their ids."""
    owners: dict[bytes, bytes] = await redis.hgetall(OWNERS_KEY)  # type: ignore[misc]
    orphans = [
        job_id.decode() for job_id, owner in owners.items() if owner.decode() not in live_workers
    ]
    if orphans:
        async with redis.pipeline(transaction=True) as pipe:
            pipe.delete(*(in_progress_key_prefix + job_id for job_id in orphans))
            pipe.hdel(OWNERS_KEY, *orphans)
            await pipe.execute()
    return orphans
