"""The outbox service against the real database: coalescing, claiming, completing."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from meterflow.db import SessionFactory, unit_of_work
from meterflow.services import accounts, outbox


async def new_account(factory: SessionFactory) -> uuid.UUID:
    async with unit_of_work(factory) as session:
        return (await accounts.create_account(session, name="outbox")).id


async def add(factory: SessionFactory, account: uuid.UUID, *keys: str) -> None:
    async with unit_of_work(factory) as session:
        await outbox.add(
            session, account_id=account, kind=outbox.RERATE, items={k: {} for k in keys}
        )


async def claim(factory: SessionFactory, account: uuid.UUID, worker: str) -> list[outbox.Work]:
    async with unit_of_work(factory) as session:
        return await outbox.claim(
            session,
            account_id=account,
            kind=outbox.RERATE,
            worker=worker,
            limit=100,
            lease_seconds=60,
        )


async def test_many_steps_touching_a_customer_leave_one_pending_rerate(
    session_factory: SessionFactory,
) -> None:
    account = await new_account(session_factory)
    await asyncio.gather(*(add(session_factory, account, "a", "b") for _ in range(20)))
    async with session_factory() as session:
        pending = await outbox.pending(session, account_id=account)
    assert sorted(w.key for w in pending) == ["a", "b"]


async def test_a_claim_is_taken_once_and_work_added_meanwhile_runs_again(
    session_factory: SessionFactory,
) -> None:
    account = await new_account(session_factory)
    await add(session_factory, account, "a", "b")
    first = await claim(session_factory, account, "w1")
    assert sorted(w.key for w in first) == ["a", "b"]
    assert await claim(session_factory, account, "w2") == []  # leased: not handed out twice

    await add(session_factory, account, "a")  # new usage for "a" while w1 is re-rating it
    async with unit_of_work(session_factory) as session:
        await outbox.complete(session, first)
    again = await claim(session_factory, account, "w2")
    assert [w.key for w in again] == ["a"]  # "b" is done; "a" runs again, at once
    async with unit_of_work(session_factory) as session:
        await outbox.complete(session, again)
        assert await outbox.pending(session, account_id=account) == []


async def test_work_held_by_a_dead_worker_is_due_again(session_factory: SessionFactory) -> None:
    account = await new_account(session_factory)
    await add(session_factory, account, "a")
    assert len(await claim(session_factory, account, "dead")) == 1
    async with unit_of_work(session_factory) as session:
        assert await outbox.release_dead_claims(session, live_workers={"alive"}) >= 1
    assert [w.key for w in await claim(session_factory, account, "alive")] == ["a"]


async def test_a_failed_item_waits_for_its_backoff(session_factory: SessionFactory) -> None:
    account = await new_account(session_factory)
    await add(session_factory, account, "a")
    (work,) = await claim(session_factory, account, "w1")
    async with unit_of_work(session_factory) as session:
        await outbox.retry(session, work, delay_seconds=0.5, error="boom")
    assert await claim(session_factory, account, "w1") == []
    await asyncio.sleep(0.6)
    (retried,) = await claim(session_factory, account, "w1")
    assert retried.attempts == 2


async def test_the_sweep_carries_on_when_redis_is_gone(session_factory: SessionFactory) -> None:
    """A sweep that starts as Redis dies neither raises (arq would log a traceback per run)
    nor judges any worker dead from an empty view; the work stays due for the next sweep."""
    from redis.asyncio import Redis

    from meterflow.jobs import JobQueue
    from meterflow.workers.outbox import sweep_outbox
    from tests.conftest import free_port

    async with unit_of_work(session_factory) as session:
        account = await accounts.create_account(session, name="no redis")
        await outbox.add(session, account_id=account.id, kind=outbox.RERATE, items={"c": {}})
    dead = f"redis://127.0.0.1:{free_port()}/0"
    redis = Redis.from_url(dead, socket_connect_timeout=0.5)
    jobs = JobQueue(dead)
    ctx = {"session_factory": session_factory, "redis": redis, "jobs": jobs, "worker_id": "w"}
    try:
        assert await sweep_outbox(ctx) >= 1  # found its work; could not enqueue it
    finally:
        await jobs.close()
        await redis.aclose()
    async with session_factory() as session:
        pending = await outbox.pending(session, account_id=account.id)
    assert [w.key for w in pending] == ["c"]


async def test_completing_work_waits_in_add_order_so_a_concurrent_step_never_deadlocks(
    session_factory: SessionFactory,
) -> None:
    """A rollup step adds its customers' work in key order while another worker completes the
    same keys: complete() must take the rows in that order too. The rows here were made, and
    are claimed, in the opposite order (c, b, a); a step holds "a" and then adds a, b, c."""
    account = await new_account(session_factory)
    for key in ("c", "b", "a"):
        await add(session_factory, account, key)
    works = await claim(session_factory, account, "w1")
    assert [w.key for w in works] == ["c", "b", "a"]

    async with unit_of_work(session_factory) as step:
        await step.execute(
            text("SELECT 1 FROM outbox WHERE account_id = :a AND key = 'a' FOR UPDATE"),
            {"a": account},
        )
        completing = asyncio.create_task(_complete(session_factory, works))
        await asyncio.sleep(0.5)  # complete() is waiting for "a": it must hold nothing else
        assert not completing.done()
        await asyncio.wait_for(
            outbox.add(
                step,
                account_id=account,
                kind=outbox.RERATE,
                items={"a": {}, "b": {}, "c": {}},
            ),
            10,  # (holding "b" and "c" it would wait forever: a deadlock)
        )
    await asyncio.wait_for(completing, 10)
    async with session_factory() as session:
        pending = await outbox.pending(session, account_id=account)
    assert sorted(w.key for w in pending) == ["a", "b", "c"]  # added again: due again


async def _complete(factory: SessionFactory, works: list[outbox.Work]) -> None:
    async with unit_of_work(factory) as session:
        await outbox.complete(session, works)
