"""Workers announce themselves so /healthz can tell whether any worker is alive."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

log = logging.getLogger("meterflow.workers.heartbeat")

HEARTBEAT_PREFIX = "mf:worker:heartbeat:"
HEARTBEAT_TTL_SECONDS = 90


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def heartbeat(ctx: dict[str, Any]) -> str:
    redis: Redis = ctx["redis"]
    name = worker_name()
    await redis.set(
        HEARTBEAT_PREFIX + name, datetime.now(UTC).isoformat(), ex=HEARTBEAT_TTL_SECONDS
    )
    return name


async def beat_forever(ctx: dict[str, Any], every: float = 15.0) -> None:
    """This worker's own heartbeat. Not an arq cron: arq runs a cron once across all workers,
    so another worker could take the beat and this one would look dead."""
    while True:
        try:
            await heartbeat(ctx)
        except Exception:  # Redis away: the key expires and /healthz tells the truth
            log.warning("heartbeat failed", exc_info=True)
        await asyncio.sleep(every)


async def live_workers(redis: Redis) -> int:
    count = 0
    async for _ in redis.scan_iter(match=HEARTBEAT_PREFIX + "*", count=100):
        count += 1
    return count
