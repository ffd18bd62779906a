"""The one seam over arq: enqueueing with deterministic ids here, the worker in `jobs.runner`.

arq is in maintenance mode upstream; no other module imports it, which keeps it replaceable.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from redis.exceptions import RedisError

from meterflow import logs

log = logging.getLogger("meterflow.jobs")

ROLLUP_JOB = "usage_rollup"
OUTBOX_JOB = "run_outbox"
ENQUEUE_TIMEOUT_SECONDS = 0.5
BACKOFF_SECONDS = 2.0


def redis_settings(redis_url: str, *, retries: int = 5) -> RedisSettings:
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_retries = retries
    settings.conn_timeout = 1
    return settings


def rollup_job_id(account_id: uuid.UUID, meter_id: uuid.UUID | None = None) -> str:
    """One waiting rollup job per meter (or per account, for all its meters)."""
    return f"rollup:{account_id}" if meter_id is None else f"rollup:{account_id}:{meter_id}"


def outbox_job_id(account_id: uuid.UUID, kind: str) -> str:
    return f"outbox:{account_id}:{kind}"


# The jobs that take a `request_id` keyword (the ones requests enqueue).
CARRY_REQUEST_ID = frozenset({ROLLUP_JOB, OUTBOX_JOB})


class JobQueue:
    """Enqueues after commit, and never lets Redis trouble fail or slow the caller.

    Enqueueing is only ever the fast path: what must happen is already durable in PostgreSQL
    (events past the rollup watermark; rows of the outbox), and the worker's sweeps enqueue it
    again (DESIGN.md §1). While Redis is down, enqueueing is skipped for a couple of seconds at a
    time instead of paying a timeout on every request.
    """

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self._pool: ArqRedis | None = None
        self._skip_until = 0.0
        self._lock = asyncio.Lock()

    async def _connected(self) -> ArqRedis:
        async with self._lock:
            if self._pool is None:
                self._pool = await create_pool(redis_settings(self.redis_url, retries=0))
            return self._pool

    async def _enqueue(self, function: str, job_id: str, delay: float, *args: object) -> bool:
        if time.monotonic() < self._skip_until:
            return False
        try:
            pool = await asyncio.wait_for(self._connected(), ENQUEUE_TIMEOUT_SECONDS)
            # The request (or job) that asks for this work: its id follows into the job's logs.
            rid = logs.request_id.get()
            carried: dict[str, Any] = (
                {"request_id": rid} if rid and function in CARRY_REQUEST_ID else {}
            )
            job = await asyncio.wait_for(
                pool.enqueue_job(
                    function, *args, _job_id=job_id, _defer_by=delay or None, **carried
                ),
                ENQUEUE_TIMEOUT_SECONDS,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._skip_until = time.monotonic() + BACKOFF_SECONDS
            log.warning(
                "could not enqueue %s (%s); the sweep will catch up", job_id, type(exc).__name__
            )
            return False
        return job is not None

    async def enqueue_coalesced(self, function: str, job_id: str, *args: object) -> bool:
        """Enqueue unless a job with this id is already waiting (bursts collapse into one run)."""
        return await self._enqueue(function, job_id, 0.0, *args)

    async def enqueue_later(self, function: str, job_id: str, delay: float, *args: object) -> bool:
        """Run once after `delay` seconds."""
        return await self._enqueue(function, job_id, delay, *args)

    async def request_rollup(
        self, account_id: uuid.UUID, meter_ids: Iterable[uuid.UUID] | None = None
    ) -> bool:
        """Have these meters' new events rolled up (each meter its own job, so that workers
        share a busy account), or, without meters, all of the account's in one job."""
        if meter_ids is None:
            return await self.enqueue_coalesced(
                ROLLUP_JOB, rollup_job_id(account_id), str(account_id)
            )
        enqueued = [
            await self.enqueue_coalesced(
                ROLLUP_JOB, rollup_job_id(account_id, meter_id), str(account_id), str(meter_id)
            )
            for meter_id in sorted(meter_ids)
        ]
        return all(enqueued)

    async def run_outbox(self, account_id: uuid.UUID, kind: str, *, delay: float = 0.0) -> bool:
        """Have an account's pending outbox work of one kind done (now, or after `delay`)."""
        if delay <= 0:
            job_id = outbox_job_id(account_id, kind)
        else:  # a retry: its own id, so a run in progress does not swallow it
            job_id = f"{outbox_job_id(account_id, kind)}:at:{int((time.time() + delay) * 1000)}"
        return await self._enqueue(OUTBOX_JOB, job_id, delay, str(account_id), kind)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
