"""Workers announce themselves, so /healthz can count the live ones and a job left behind by a
worker that died (kill -9, a lost machine) can be taken over within seconds."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from meterflow.jobs.runner import release_orphans

log = logging.getLogger("meterflow.workers.heartbeat")

HEARTBEAT_PREFIX = "mf:worker:heartbeat:"
# A beat every second, gone 5 s after the last: a dead worker's jobs move on within seconds.
# A live worker stalled longer than that only costs a harmless second run of its job.
BEAT_SECONDS = 1.0
HEARTBEAT_TTL_SECONDS = 5


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def new_worker_id() -> str:
    """`<host>:<pid>:<token>`: the token tells a restarted worker apart from the one it
    replaced (in a container both are pid 1 on the same host name)."""
    return f"{worker_name()}:{secrets.token_hex(4)}"


async def heartbeat(ctx: dict[str, Any]) -> str:
    """Key per host and process (what /healthz counts); the value names this instance."""
    redis: Redis = ctx["redis"]
    worker_id: str = ctx["worker_id"]
    name, _, token = worker_id.rpartition(":")
    await redis.set(
        HEARTBEAT_PREFIX + name,
        f"{token} {datetime.now(UTC).isoformat()}",
        ex=HEARTBEAT_TTL_SECONDS,
    )
    return name


async def live_worker_ids(redis: Redis) -> set[str]:
    """The ids of the workers beating now (one SCAN, one MGET)."""
    keys = [key async for key in redis.scan_iter(match=HEARTBEAT_PREFIX + "*", count=100)]
    if not keys:
        return set()
    live = set()
    for key, value in zip(keys, await redis.mget(keys), strict=True):
        if value is not None:  # expired between the scan and the read
            name = key.decode().removeprefix(HEARTBEAT_PREFIX)
            live.add(f"{name}:{value.decode().split(' ', 1)[0]}")
    return live


async def beat_forever(ctx: dict[str, Any], every: float = BEAT_SECONDS) -> None:
    """This worker's own heartbeat, and the take-over of dead workers' jobs. Not an arq cron:
    arq runs a cron once across all workers, so another worker could take the beat and this one
    would look dead. While Redis is away the key expires and /healthz tells the truth; the
    worker says so once (the poll loop does) and beats again as soon as Redis is back."""
    while True:
        try:
            await heartbeat(ctx)
            live = await live_worker_ids(ctx["redis"])
            if ctx["worker_id"] in live:  # never judge others from a partial view
                for job_id in await release_orphans(ctx["redis"], live):
                    log.warning("took over job %s: its worker is gone", job_id)
        except (RedisError, OSError):
            pass
        except Exception:
            log.exception("heartbeat failed")
        await asyncio.sleep(every)


async def live_workers(redis: Redis) -> int:
    count = 0
    async for _ in redis.scan_iter(match=HEARTBEAT_PREFIX + "*", count=100):
        count += 1
    return count
