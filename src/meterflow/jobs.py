"""The one seam over arq: pools and enqueueing with deterministic ids.

arq is in maintenance mode upstream; keeping every use of it behind this module and `workers/`
keeps it replaceable.
"""

from __future__ import annotations

from arq import ArqRedis, create_pool
from arq.connections import RedisSettings


def redis_settings(redis_url: str) -> RedisSettings:
    return RedisSettings.from_dsn(redis_url)


async def job_pool(redis_url: str) -> ArqRedis:
    return await create_pool(redis_settings(redis_url))


async def enqueue_coalesced(pool: ArqRedis, function: str, job_id: str, *args: object) -> bool:
    """Enqueue unless a job with this id is already queued; bursts collapse into one run.

    Returns False when an identical job was already waiting (that run will see our data too).
    """
    job = await pool.enqueue_job(function, *args, _job_id=job_id)
    return job is not None
