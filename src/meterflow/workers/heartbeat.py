"""Workers announce themselves so /healthz can tell whether any worker is alive."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis

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


async def live_workers(redis: Redis) -> int:
    count = 0
    async for _ in redis.scan_iter(match=HEARTBEAT_PREFIX + "*", count=100):
        count += 1
    return count
