"""The rollup job run twice, run concurrently, or killed part-way and run again: same usage."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from meterflow.db import SessionFactory, unit_of_work
from meterflow.models import MeterType
from meterflow.services import accounts, events, ingestion, meters, rollups
from meterflow.services.meters import MeterSpec
from tests.conftest import ROOT

NOW = datetime.now(UTC)


async def seed(factory: SessionFactory, count: int) -> uuid.UUID:
    async with unit_of_work(factory) as session:
        account = await accounts.create_account(session, name="idem")
        for name, kind in (("s", MeterType.SUM), ("u", MeterType.UNIQUE_COUNT)):
            await meters.create_meter(
                session,
                account_id=account.id,
                meter_api_name=name,
                spec=MeterSpec(
                    label=name,
                    meter_type=kind,
                    dimensions=("user",),
                    aggregation_dimension="user" if name == "u" else None,
                ),
            )
    base = int((NOW - timedelta(hours=30)).timestamp() * 1000)
    for start in range(0, count, 5000):
        records = []
        for i in range(start, min(start + 5000, count)):
            data = {
                "meterApiName": "s" if i % 3 else "u",
                "customerId": f"c{i % 7}",
                "meterValue": i % 5,
                "meterTimeInMillis": base + i * 1700,
                "uniqueId": f"e{i}",
                "dimensions": {"user": f"user{i % 11}"},
            }
            records.append(ingestion.RawRecord(data, json.dumps(data)))
        async with unit_of_work(factory) as session:
            await ingestion.ingest(session, account_id=account.id, records=records, now=NOW)
    return account.id


async def rollup_to_end(
    factory: SessionFactory, account_id: uuid.UUID, max_events: int = 50_000
) -> None:
    while True:
        async with unit_of_work(factory) as session:
            step = await rollups.rollup_account(
                session, account_id=account_id, max_events=max_events
            )
        if not step.more:
            return


async def snapshot(factory: SessionFactory, account_id: uuid.UUID) -> dict[str, list]:  # type: ignore[type-arg]
    async with factory() as session:
        out = {}
        for table, cols in (
            (
                "usage_rollups",
                "meter_id, customer_id, hour, dimensions, sum, count, max, "
                "latest_time, latest_seq, latest_value",
            ),
            ("usage_distinct_values", "meter_id, customer_id, hour, dimensions, value"),
            (
                "usage_daily",
                "meter_id, customer_id, day, sum, count, max, latest_time, "
                "latest_seq, latest_value",
            ),
        ):
            rows = await session.execute(
                text(f"SELECT {cols} FROM {table} WHERE account_id = :a ORDER BY {cols}"),
                {"a": account_id},
            )
            out[table] = [tuple(r) for r in rows]
        return out


async def from_raw(factory: SessionFactory, account_id: uuid.UUID) -> list[tuple]:  # type: ignore[type-arg]
    """The truth, straight from raw events: per meter, customer and hour."""
    async with factory() as session:
        rows = await session.execute(
            text(
                "SELECT meter_id, customer_id, date_trunc('hour', event_time, 'UTC') AS h, "
                "sum(value), count(*), max(value) FROM meter_events "
                "WHERE account_id = :a AND cancelled_at IS NULL "
                "GROUP BY meter_id, customer_id, h ORDER BY meter_id, customer_id, h"
            ),
            {"a": account_id},
        )
        return [tuple(r) for r in rows]


async def rolled(factory: SessionFactory, account_id: uuid.UUID) -> list[tuple]:  # type: ignore[type-arg]
    async with factory() as session:
        rows = await session.execute(
            text(
                "SELECT meter_id, customer_id, hour, sum(sum), sum(count), max(max) "
                "FROM usage_rollups WHERE account_id = :a "
                "GROUP BY meter_id, customer_id, hour ORDER BY meter_id, customer_id, hour"
            ),
            {"a": account_id},
        )
        return [tuple(r) for r in rows]


async def test_running_twice_changes_nothing(session_factory: SessionFactory) -> None:
    account_id = await seed(session_factory, 3000)
    await rollup_to_end(session_factory, account_id, max_events=700)
    first = await snapshot(session_factory, account_id)
    async with unit_of_work(session_factory) as session:
        again = await rollups.rollup_account(session, account_id=account_id)
    assert again.events == 0
    assert await snapshot(session_factory, account_id) == first
    assert await rolled(session_factory, account_id) == await from_raw(session_factory, account_id)


async def test_concurrent_runs_count_once(session_factory: SessionFactory) -> None:
    account_id = await seed(session_factory, 4000)

    async def one() -> None:
        await rollup_to_end(session_factory, account_id, max_events=500)

    await asyncio.gather(one(), one(), one())
    assert await rolled(session_factory, account_id) == await from_raw(session_factory, account_id)


async def test_cancellation_after_rollup_is_reflected(session_factory: SessionFactory) -> None:
    account_id = await seed(session_factory, 600)
    await rollup_to_end(session_factory, account_id)
    before = await snapshot(session_factory, account_id)
    async with unit_of_work(session_factory) as session:
        report = await events.cancel_events(
            session,
            account_id=account_id,
            meter_api_name="s",
            unique_ids=[f"e{i}" for i in range(1, 300, 3)],
        )
    assert len(report.cancelled) == 100
    await rollup_to_end(session_factory, account_id)
    assert await snapshot(session_factory, account_id) != before
    assert await rolled(session_factory, account_id) == await from_raw(session_factory, account_id)


async def test_worker_killed_part_way_then_rerun(
    session_factory: SessionFactory, server_env: dict[str, str]
) -> None:
    account_id = await seed(session_factory, 40_000)
    env = {**server_env, "METERFLOW_ROLLUP_BATCH_EVENTS": "2000"}
    # Popen returns at once (the worker runs beside the test); only the kill is waited for.
    worker = subprocess.Popen(  # noqa: ASYNC220
        [sys.executable, "-m", "meterflow.cli", "worker"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the first step has committed: the job is part-way through
            async with session_factory() as session:
                mark = await session.scalar(
                    text("SELECT max(xid) FROM usage_meter_watermarks WHERE account_id = :a"),
                    {"a": account_id},
                )
            if mark is not None:
                break
            assert worker.poll() is None
            assert time.monotonic() < deadline, "the worker never started on the account"
            await asyncio.sleep(0.005)
        os.kill(worker.pid, signal.SIGKILL)
    finally:
        worker.wait(10)
    partial = await rolled(session_factory, account_id)
    truth = await from_raw(session_factory, account_id)
    assert partial != truth, "the kill came too late to prove anything"
    assert sum(r[4] for r in partial) < sum(r[4] for r in truth)

    await rollup_to_end(session_factory, account_id)
    assert await rolled(session_factory, account_id) == truth


async def test_a_slow_ingest_is_never_skipped(
    session_factory: SessionFactory, test_services: object
) -> None:
    """An ingest transaction that commits after a later one holds the watermark back, and both
    are counted once; a long transaction in another database holds nothing back."""
    import asyncpg

    account_id = await seed(session_factory, 10)
    await rollup_to_end(session_factory, account_id)

    def records(prefix: str) -> list[ingestion.RawRecord]:
        out = []
        for i in range(3):
            data = {
                "meterApiName": "s",
                # An existing customer: creating one would make the later ingest wait on the
                # slow transaction's uncommitted customer row.
                "customerId": "c1",
                "meterValue": 7,
                "meterTimeInMillis": int(NOW.timestamp() * 1000) - 60_000,
                "uniqueId": f"{prefix}{i}",
                "dimensions": {"user": "u"},
            }
            out.append(ingestion.RawRecord(data, json.dumps(data)))
        return out

    before = await rolled(session_factory, account_id)
    async with session_factory() as slow, slow.begin():
        await ingestion.ingest(slow, account_id=account_id, records=records("slow"), now=NOW)
        async with unit_of_work(session_factory) as quick:  # starts later, commits first
            await ingestion.ingest(quick, account_id=account_id, records=records("quick"), now=NOW)
        await rollup_to_end(session_factory, account_id)
        rolled_early = await rolled(session_factory, account_id)
        assert rolled_early == before, "rolled past a transaction that had not committed"
    # Now the slow one has committed too.
    await rollup_to_end(session_factory, account_id)
    truth = await from_raw(session_factory, account_id)
    assert await rolled(session_factory, account_id) == truth
    assert sum(r[4] for r in truth) - sum(r[4] for r in before) == 6  # 3 slow + 3 quick

    # A transaction holding an xid open in another database does not stall this one.
    admin = test_services.admin_database_url.replace(  # type: ignore[attr-defined]
        "postgresql+asyncpg://", "postgresql://"
    )
    other = await asyncpg.connect(admin)
    try:
        transaction = other.transaction()
        await transaction.start()
        await other.fetchval("SELECT pg_current_xact_id()")  # takes an xid and keeps it
        async with unit_of_work(session_factory) as session:
            await ingestion.ingest(
                session, account_id=account_id, records=records("later"), now=NOW
            )
        await rollup_to_end(session_factory, account_id)
        assert await rolled(session_factory, account_id) == await from_raw(
            session_factory, account_id
        )
        await transaction.rollback()
    finally:
        await other.close()
