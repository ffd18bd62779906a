"""arq worker configuration. `meterflow worker` runs it; `meterflow dev` runs it in-process."""

from __future__ import annotations

from typing import Any

from arq import cron
from arq.worker import Worker

from meterflow.config import Settings
from meterflow.db import create_engine, create_session_factory
from meterflow.jobs import redis_settings
from meterflow.workers.heartbeat import heartbeat

FUNCTIONS: list[Any] = [heartbeat]
CRON_JOBS = [
    # Every 30 s, and once at start-up: a worker is visible within a second of starting.
    cron(heartbeat, name="cron:heartbeat", second={0, 30}, run_at_startup=True, keep_result=0),
]


def build_worker(settings: Settings, *, handle_signals: bool = True, burst: bool = False) -> Worker:
    engine = create_engine(settings.database_url, pool_size=5)

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["session_factory"] = create_session_factory(engine)

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        await engine.dispose()

    return Worker(
        functions=FUNCTIONS,
        cron_jobs=CRON_JOBS,
        redis_settings=redis_settings(settings.redis_url),
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        burst=burst,
        keep_result=0,
        max_jobs=20,
    )
