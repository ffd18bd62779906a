"""The billing-period close: a cron job, one account at a time, in short transactions."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from meterflow.services import outbox, period_close
from meterflow.workers.rollup import run_caused_work

log = logging.getLogger("meterflow.workers.billing")


async def close_billing_periods(ctx: dict[str, Any]) -> int:
    """Finalize ended periods, open current ones, expire credits. Idempotent."""

    async def after_catch_up(account: uuid.UUID) -> None:
        # The close rolled usage up itself, recording the re-rates and alert evaluations it
        # causes in the outbox: do them now, as the rollup job would.
        await run_caused_work(ctx, account)

    report = await period_close.close_all(
        ctx["session_factory"], clock=lambda: datetime.now(UTC), after_catch_up=after_catch_up
    )
    jobs = ctx.get("jobs")
    if jobs is not None:
        for account in report.changed:
            for kind in (outbox.SYNC_INVOICE, outbox.DELIVER_WEBHOOK):  # the close's outbox work
                await jobs.run_outbox(account, kind)
    if report.finalized or report.to_grace or report.opened or report.failed:
        log.info("billing periods: %s", report)
    return report.finalized
