"""arq worker configuration. `meterflow worker` runs it; `meterflow dev` runs it in-process."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from arq import cron
from arq.worker import Worker, func

from meterflow.config import Settings
from meterflow.db import create_engine, create_session_factory
from meterflow.jobs import DELIVER_JOB, RERATE_JOB, ROLLUP_JOB, JobQueue, redis_settings
from meterflow.secretbox import SecretBox
from meterflow.workers.alerts import deliver_alert
from meterflow.workers.billing import close_billing_periods
from meterflow.workers.heartbeat import beat_forever, heartbeat
from meterflow.workers.rollup import (
    alert_period_ends,
    rerate_customer,
    sweep_rollups,
    usage_rollup,
)

FUNCTIONS: list[Any] = [
    heartbeat,
    # keep_result=0 frees the deterministic job id at once, so the next burst can enqueue.
    func(usage_rollup, name=ROLLUP_JOB, keep_result=0, max_tries=5),
    func(rerate_customer, name=RERATE_JOB, keep_result=0, max_tries=10),
    func(deliver_alert, name=DELIVER_JOB, keep_result=0, max_tries=3),
]
CRON_JOBS = [
    # Ended billing periods move on, current ones open, credits expire: every minute.
    cron(
        close_billing_periods,
        name="cron:close_billing_periods",
        second={5},
        run_at_startup=True,
        keep_result=0,
        unique=True,
    ),
    # Percentage-change alert rules, judged on the period that just ended: hourly.
    cron(
        alert_period_ends,
        name="cron:alert_period_ends",
        minute={0},
        second={15},
        keep_result=0,
        unique=True,
    ),
    # The safety net behind enqueue-after-commit: every 5 s.
    cron(
        sweep_rollups,
        name="cron:sweep_rollups",
        second=set(range(0, 60, 5)),
        run_at_startup=True,
        keep_result=0,
        unique=True,
    ),
]


def build_worker(settings: Settings, *, handle_signals: bool = True, burst: bool = False) -> Worker:
    # httpx logs every request's full URL at INFO: a Slack webhook URL is a credential.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Deliveries open webhook secrets and URLs sealed with a key derived from the secret key.
    secret_box = SecretBox.from_keys(settings.required_secret_keys())
    engine = create_engine(
        settings.database_url,
        pool_size=5,
        statement_timeout_ms=settings.worker_statement_timeout_ms,
    )
    jobs = JobQueue(settings.redis_url)

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["session_factory"] = create_session_factory(engine)
        ctx["jobs"] = jobs
        ctx["rollup_batch_events"] = settings.rollup_batch_events
        ctx["alert_retry_base_seconds"] = settings.alert_retry_base_seconds
        ctx["alert_max_attempts"] = settings.alert_max_attempts
        ctx["smtp_host"], ctx["smtp_port"] = settings.smtp_host, settings.smtp_port
        ctx["smtp_from"] = settings.smtp_from
        ctx["allow_private_webhook_targets"] = settings.allow_private_webhook_targets
        ctx["secret_box"] = secret_box
        ctx["heartbeat"] = asyncio.create_task(beat_forever(ctx), name="heartbeat")

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        ctx["heartbeat"].cancel()
        await jobs.close()
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
        # Freshness: a queued rollup starts within ~50 ms, not arq's default 0.5 s.
        poll_delay=0.05,
    )
