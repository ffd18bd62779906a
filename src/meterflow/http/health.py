"""GET /healthz: is this process able to reach Postgres and Redis right now."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text
from starlette.requests import Request
from starlette.responses import JSONResponse

from meterflow.db import SessionFactory
from meterflow.workers.heartbeat import live_workers

CHECK_TIMEOUT_SECONDS = 2.0


async def _check_postgres(factory: SessionFactory) -> str:
    async with factory() as session:
        await session.execute(text("SELECT 1"))
    return "ok"


async def _check_redis(redis: Redis) -> str:
    await redis.ping()
    return "ok"


async def _timed(check: Coroutine[Any, Any, str]) -> tuple[str, float]:
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(check, CHECK_TIMEOUT_SECONDS)
    except Exception as exc:
        status = f"error: {type(exc).__name__}"
    return status, round((time.perf_counter() - started) * 1000, 1)


async def _live_workers(redis: Redis) -> int | None:
    try:
        return await asyncio.wait_for(live_workers(redis), CHECK_TIMEOUT_SECONDS)
    except Exception:
        return None


async def healthz(request: Request) -> JSONResponse:
    state = request.app.state
    (pg, pg_ms), (rd, rd_ms) = await asyncio.gather(
        _timed(_check_postgres(state.session_factory)), _timed(_check_redis(state.redis))
    )
    healthy = pg == "ok" and rd == "ok"
    workers = await _live_workers(state.redis) if rd == "ok" else None
    return JSONResponse(
        {
            "status": "ok" if healthy else "degraded",
            "postgres": {"status": pg, "ms": pg_ms},
            "redis": {"status": rd, "ms": rd_ms},
            # Informational: the API serves without workers, but usage would stop moving.
            "workers": workers,
        },
        status_code=200 if healthy else 503,
    )
