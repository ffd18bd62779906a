"""The one seam over arq: pools and enqueueing with deterministic ids.

arq is in maintenance mode upstream; keeping every use of it behind this module and `workers/`
keeps it replaceable.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings
from redis.exceptions import RedisError

log = logging.getLogger("meterflow.jobs")

ROLLUP_JOB = "usage_rollup"
RERATE_JOB = "rerate_customer"
DELIVER_JOB = "deliver_alert"
ENQUEUE_TIMEOUT_SECONDS = 0.5
BACKOFF_SECONDS = 2.0


def redis_settings(redis_url: str, *, retries: int = 5) -> RedisSettings:
    settings = RedisSettings.from_dsn(redis_url)
    settings.conn_retries = retries
    settings.conn_timeout = 1
    return settings


def rollup_job_id(account_id: uuid.UUID) -> str:
    return f"rollup:{account_id}"


class JobQueue:
    """Enqueues after commit, and never lets Redis trouble fail or slow the caller.

    A job that cannot be enqueued is not lost: the worker's periodic sweep finds every account
    whose rollup watermark lags and runs it (DESIGN.md §1). While Redis is down, enqueueing is
    skipped for a couple of seconds at a time instead of paying a timeout on every request.
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

    async def enqueue_coalesced(self, function: str, job_id: str, *args: object) -> bool:
        """Enqueue unless a job with this id is already waiting (bursts collapse into one run)."""
        if time.monotonic() < self._skip_until:
            return False
        try:
            pool = await asyncio.wait_for(self._connected(), ENQUEUE_TIMEOUT_SECONDS)
            job = await asyncio.wait_for(
                pool.enqueue_job(function, *args, _job_id=job_id), ENQUEUE_TIMEOUT_SECONDS
            )
        except (RedisError, OSError, TimeoutError) as exc:
            self._skip_until = time.monotonic() + BACKOFF_SECONDS
            log.warning(
                "could not enqueue %s (%s); the sweep will catch up", job_id, type(exc).__name__
            )
            return False
        return job is not None

    async def enqueue_later(self, function: str, job_id: str, delay: float, *args: object) -> bool:
        """Run once after `delay` seconds (retries with backoff)."""
        try:
            pool = await asyncio.wait_for(self._connected(), ENQUEUE_TIMEOUT_SECONDS)
            job = await asyncio.wait_for(
                pool.enqueue_job(function, *args, _job_id=job_id, _defer_by=delay),
                ENQUEUE_TIMEOUT_SECONDS,
            )
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not enqueue %s (%s)", job_id, type(exc).__name__)
            return False
        return job is not None

    async def request_rollup(self, account_id: uuid.UUID) -> bool:
        return await self.enqueue_coalesced(ROLLUP_JOB, rollup_job_id(account_id), str(account_id))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
