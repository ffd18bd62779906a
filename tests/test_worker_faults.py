"""Faults around the worker: Redis going away (with work owed at that moment), and a worker
killed with -9 in the middle of a rollup. Real `meterflow worker` processes, a private
redis-server that the tests kill, real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlmodel import col

from meterflow.db import SessionFactory
from meterflow.jobs.runner import OWNERS_KEY
from meterflow.models import AlertDelivery
from meterflow.workers import rollup
from tests.client import GraphQLClient
from tests.conftest import ROOT, PrivateRedis, make_account, running_server
from tests.helpers import create_meter, event, ingest
from tests.test_alerts import Receiver
from tests.test_rerate_retry import (
    billed_account,
    failing_rerates,
    ingest_event,
    invoice_total,
    worker_ctx,
)
from tests.test_rollup_idempotency import from_raw, rolled, seed


@contextmanager
def worker_process(env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "meterflow.cli", "worker"],
            env=env,
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)


async def until(check: Callable[[], Awaitable[Any]], within: float, what: str) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.1)


async def worker_up(
    redis_url: str, process: subprocess.Popen[bytes], *, idle: bool = False
) -> None:
    """Until the worker's heartbeat is in this Redis (and, with `idle`, it has nothing queued
    or running: the jobs it runs at start are over, so none of them races the test)."""
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:

        async def ready() -> bool:
            assert process.poll() is None, "the worker exited"
            if not await client.keys("mf:worker:heartbeat:*"):
                return False
            if not idle:
                return True
            queued = await client.zrangebyscore("arq:queue", 0, time.time() * 1000)
            return not queued and not await client.hlen(OWNERS_KEY)  # (jobs running now)

        await until(ready, 30, "the worker never got ready")
    finally:
        await client.aclose()


@asynccontextmanager
async def outage(redis: PrivateRedis) -> AsyncIterator[None]:
    redis.kill()
    try:
        yield
    finally:
        redis.start()


async def test_a_rerate_owed_while_redis_was_down_happens_when_it_returns(
    session_factory: SessionFactory,
    server_env: dict[str, str],
    private_redis: PrivateRedis,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    account = await billed_account(session_factory, with_event=False)
    env = {**server_env, "METERFLOW_REDIS_URL": private_redis.url}
    with worker_process(env, tmp_path / "worker.log") as worker:
        await worker_up(private_redis.url, worker, idle=True)
        async with outage(private_redis):
            await ingest_event(session_factory, account)
            # A rollup step (run as the worker runs it) while Redis is down: its own re-rate
            # fails (a database hiccup), and no retry can be enqueued.
            switch = failing_rerates(monkeypatch)
            ctx = worker_ctx(session_factory, private_redis.url)
            try:
                assert await rollup.usage_rollup(ctx, str(account)) == 1
            finally:
                await ctx["jobs"].close()
                await ctx["redis"].aclose()
            switch["fail"] = False
            assert await invoice_total(session_factory, account) in (None, Decimal("0.00"))
        # Redis is back; no new event: the invoice is re-rated all the same (4 x 0.5).
        await until(
            lambda: _is(invoice_total(session_factory, account), Decimal("2.00")),
            30,
            "the re-rate owed was lost",
        )
        assert worker.poll() is None


async def test_an_alert_fired_while_enqueueing_fails_is_delivered(
    session_factory: SessionFactory,
    server_env: dict[str, str],
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    try:
        account = await billed_account(
            session_factory, alert_rule=True, webhook=receiver.url, with_event=False
        )
        env = {**server_env, "METERFLOW_REDIS_URL": private_redis.url}
        with worker_process(env, tmp_path / "worker.log") as worker:
            await worker_up(private_redis.url, worker, idle=True)
            async with outage(private_redis):
                await ingest_event(session_factory, account)
                ctx = worker_ctx(session_factory, private_redis.url)
                try:  # the alert fires; queueing its delivery fails
                    assert await rollup.usage_rollup(ctx, str(account)) == 1
                finally:
                    await ctx["jobs"].close()
                    await ctx["redis"].aclose()
                assert receiver.requests == []

            async def delivered() -> list[str]:
                async with session_factory() as session:
                    rows = await session.scalars(
                        select(AlertDelivery.status).where(col(AlertDelivery.account_id) == account)
                    )
                    return [s for s in rows if s == "DELIVERED"]

            assert await until(delivered, 30, "the delivery was lost") == ["DELIVERED"]
            await asyncio.sleep(1)  # and only once
            assert len(receiver.requests) == 1
            assert b'"customerId":"r1"' in receiver.requests[0][2]
    finally:
        receiver.close()


async def _is(value: Awaitable[Any], expected: Any) -> bool:
    return bool(await value == expected)


async def test_the_worker_survives_a_redis_outage(
    session_factory: SessionFactory,
    server_env: dict[str, str],
    private_redis: PrivateRedis,
    tmp_path: Path,
) -> None:
    env = {**server_env, "METERFLOW_REDIS_URL": private_redis.url}
    log = tmp_path / "worker.log"
    key = (await make_account(session_factory)).admin_key
    with running_server(env) as base, worker_process(env, log) as worker:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            gql = GraphQLClient(http, key)
            await create_meter(gql, "calls")
            day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)

            async def total() -> str | None:
                data = await gql(
                    """query($s: DateTime!, $e: DateTime!) { usage(input: {meterApiName:
                    "calls", timeGroupingInterval: DAY, startTime: $s, endTime: $e}) {
                    groups { total } } }""",
                    {"s": day.isoformat(), "e": (day + timedelta(days=1)).isoformat()},
                )
                groups = data["usage"]["groups"]
                return groups[0]["total"] if groups else None

            async def workers() -> int:
                return int((await http.get("/healthz")).json()["workers"] or 0)

            await ingest(gql, [event("calls", "c", 1)])
            await until(lambda: _is(total(), "1"), 20, "no rollup before the outage")
            await until(workers, 20, "/healthz never counted the worker")

            private_redis.kill()
            await asyncio.sleep(5)  # several reconnection attempts
            assert worker.poll() is None, "the worker died with Redis"
            private_redis.start()
            restarted = time.monotonic()

            await ingest(gql, [event("calls", "c", 2)])
            await until(lambda: _is(total(), "3"), 15, "no rollup after Redis came back")
            await until(workers, 10, "/healthz no longer counts the worker")
            recovered = time.monotonic() - restarted
            assert worker.poll() is None
    output = log.read_text()
    assert output.count("Redis unreachable") == 1, output
    assert "Traceback" not in output, output
    print(f"rollup and health back {recovered:.1f} s after Redis restarted")


async def test_a_worker_killed_mid_rollup_is_taken_over_within_seconds(
    session_factory: SessionFactory, server_env: dict[str, str], tmp_path: Path
) -> None:
    account = await seed(session_factory, 20_000)
    truth = await from_raw(session_factory, account)
    slow = {
        **server_env,
        "METERFLOW_ROLLUP_BATCH_EVENTS": "1000",
        rollup.TEST_HOOK_STEP_PAUSE: "1",
    }
    with worker_process(slow, tmp_path / "first.log") as first:

        async def stepped() -> bool:
            assert first.poll() is None, "the worker exited"
            async with session_factory() as session:
                mark = await session.scalar(
                    text("SELECT max(xid) FROM usage_meter_watermarks WHERE account_id = :a"),
                    {"a": account},
                )
            return mark is not None

        await until(stepped, 60, "the worker never started on the account")
        os.kill(first.pid, signal.SIGKILL)  # mid-job: its first step committed, more to go
        first.wait(10)
    partial = await rolled(session_factory, account)
    assert sum(r[4] for r in partial) < sum(r[4] for r in truth), "killed too late"

    with worker_process(server_env, tmp_path / "second.log") as second:
        started = time.monotonic()

        async def caught_up() -> bool:
            assert second.poll() is None, "the worker exited"
            return await rolled(session_factory, account) == truth

        await until(caught_up, 15, "usage stalled after the kill")
        took = time.monotonic() - started
    # Exactly once, from raw events: every event counted, none twice.
    assert await rolled(session_factory, account) == truth
    assert took < 15
    print(f"usage caught up {took:.1f} s after the new worker started")


async def test_a_worker_started_before_redis_waits_for_it(
    server_env: dict[str, str], private_redis: PrivateRedis, tmp_path: Path
) -> None:
    env = {**server_env, "METERFLOW_REDIS_URL": private_redis.url}
    private_redis.kill()
    log = tmp_path / "worker.log"
    with worker_process(env, log) as worker:
        await asyncio.sleep(8)  # longer than arq's own connection retries (5 x 1 s)
        assert worker.poll() is None, log.read_text()
        private_redis.start()
        await worker_up(private_redis.url, worker)
    output = log.read_text()
    assert output.count("Redis unreachable at start") == 1, output
    assert "Traceback" not in output, output
