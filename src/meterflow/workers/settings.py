"""The worker: which jobs it runs and on what schedule. `meterflow worker` runs it; `meterflow
dev` runs it in-process. arq stays behind meterflow.jobs."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from meterflow.config import Settings
from meterflow.db import create_engine, create_session_factory
from meterflow.jobs import OUTBOX_JOB, ROLLUP_JOB, JobQueue
from meterflow.jobs.runner import JobRunner, JobSpec, Schedule, build_runner
from meterflow.secretbox import SecretBox
from meterflow.services import outbox
from meterflow.workers.alerts import deliver_work
from meterflow.workers.billing import close_billing_periods
from meterflow.workers.heartbeat import beat_forever, new_worker_id
from meterflow.workers.outbox import Handler, run_outbox, sweep_outbox
from meterflow.workers.payments import sync_invoice_work, sync_top_up_work
from meterflow.workers.rollup import (
    JOB_TIMEOUT_SECONDS,
    alert_period_ends,
    evaluate_work,
    rerate_work,
    sweep_rollups,
    usage_rollup,
)
from meterflow.workers.throughput import new_counters, report_throughput
from meterflow.workers.webhooks import deliver_work as deliver_webhook_work

OUTBOX_HANDLERS: dict[str, Handler] = {
    outbox.RERATE: rerate_work,
    outbox.EVALUATE_ALERTS: evaluate_work,
    outbox.DELIVER_ALERT: deliver_work,
    outbox.SYNC_INVOICE: sync_invoice_work,
    outbox.SYNC_TOP_UP: sync_top_up_work,
    outbox.DELIVER_WEBHOOK: deliver_webhook_work,
}
JOBS = [
    JobSpec(usage_rollup, ROLLUP_JOB, timeout_seconds=JOB_TIMEOUT_SECONDS),
    # A batch of deliveries: each HTTP attempt is bounded (a few addresses x 5 s).
    JobSpec(run_outbox, OUTBOX_JOB, timeout_seconds=120),
]
EVERY_5_SECONDS = frozenset(range(0, 60, 5))
SCHEDULES = [
    # Ended billing periods move on, current ones open, credits expire: every minute.
    Schedule(
        close_billing_periods,
        "cron:close_billing_periods",
        timeout_seconds=300,
        second=frozenset({5}),
        run_at_startup=True,
    ),
    # Percentage-change alert rules, judged on the period that just ended: hourly.
    Schedule(
        alert_period_ends,
        "cron:alert_period_ends",
        timeout_seconds=300,
        minute=frozenset({0}),
        second=frozenset({15}),
    ),
    # The safety nets behind enqueue-after-commit: rollups past the watermark, outbox work due.
    Schedule(
        sweep_rollups,
        "cron:sweep_rollups",
        timeout_seconds=60,
        second=EVERY_5_SECONDS,
        run_at_startup=True,
    ),
    Schedule(
        sweep_outbox,
        "cron:sweep_outbox",
        timeout_seconds=60,
        second=EVERY_5_SECONDS,
        run_at_startup=True,
    ),
    # One line a minute of what this worker did (job-by-job lines are at DEBUG).
    Schedule(
        report_throughput, "cron:report_throughput", timeout_seconds=10, second=frozenset({0})
    ),
]


def build_worker(
    settings: Settings, *, handle_signals: bool = True, burst: bool = False
) -> JobRunner:
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
    worker_id = new_worker_id()

    async def on_startup(ctx: dict[str, Any]) -> None:
        ctx["worker_id"] = worker_id
        ctx["session_factory"] = create_session_factory(engine)
        ctx["jobs"] = jobs
        ctx["outbox_handlers"] = OUTBOX_HANDLERS
        ctx["rollup_batch_events"] = settings.rollup_batch_events
        ctx["alert_retry_base_seconds"] = settings.alert_retry_base_seconds
        ctx["alert_max_attempts"] = settings.alert_max_attempts
        ctx["smtp_host"], ctx["smtp_port"] = settings.smtp_host, settings.smtp_port
        ctx["smtp_from"] = settings.smtp_from
        ctx["allow_private_webhook_targets"] = settings.allow_private_webhook_targets
        ctx["secret_box"] = secret_box
        ctx["stripe_api_base"] = settings.stripe_api_base
        ctx["top_up_retry_seconds"] = settings.top_up_retry_seconds
        ctx["webhook_retry_base_seconds"] = settings.webhook_retry_base_seconds
        ctx["webhook_retry_window_seconds"] = settings.webhook_retry_window_seconds
        ctx["heartbeat"] = asyncio.create_task(beat_forever(ctx), name="heartbeat")
        # arq hands each job a copy of this dict: the counters live in one shared object.
        ctx["throughput"] = new_counters()

    async def on_shutdown(ctx: dict[str, Any]) -> None:
        ctx["heartbeat"].cancel()
        await jobs.close()
        await engine.dispose()

    return build_runner(
        jobs=JOBS,
        schedules=SCHEDULES,
        redis_url=settings.redis_url,
        worker_id=worker_id,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        handle_signals=handle_signals,
        burst=burst,
    )
