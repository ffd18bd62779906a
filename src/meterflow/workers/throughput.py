"""One line a minute of what the worker did: jobs run, events rolled up, accounts behind.

Job-by-job lines are arq's, at DEBUG (`METERFLOW_LOG_LEVEL=debug`); this is what an operator
watching `meterflow worker` or `meterflow dev` reads instead."""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("meterflow.worker")


def new_counters() -> dict[str, int]:
    return {"jobs": 0, "events": 0, "lagging": 0}


def _stats(ctx: dict[str, Any]) -> dict[str, int]:
    stats: dict[str, int] = ctx.setdefault("throughput", new_counters())
    return stats


def job_done(ctx: dict[str, Any], *, events: int = 0) -> None:
    stats = _stats(ctx)
    stats["jobs"] += 1
    stats["events"] += events


def accounts_behind(ctx: dict[str, Any], count: int) -> None:
    _stats(ctx)["lagging"] = count


async def report_throughput(ctx: dict[str, Any]) -> int:
    stats = _stats(ctx)
    log.info(
        "last minute: %d jobs, %d events rolled up; %d accounts behind their watermark at the "
        "last sweep",
        stats["jobs"],
        stats["events"],
        stats["lagging"],
    )
    jobs = stats["jobs"]
    stats["jobs"] = stats["events"] = 0
    return jobs
