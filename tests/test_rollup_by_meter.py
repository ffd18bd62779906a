"""The rollup goes by meter (services/rollups.py): each meter of an account has its own
watermark and its own lock, so two workers roll up one account's meters side by side, a
meter's backlog holds back no other, and a meter that has no watermark of its own starts from
its account's (where the rollup stood when it went by account) without counting anything
twice. Every total is checked against the raw events."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import text

from meterflow.db import SessionFactory, unit_of_work
from meterflow.services import rollups
from tests.test_rollup_idempotency import rollup_to_end, seed, snapshot


async def meter_ids(factory: SessionFactory, account_id: uuid.UUID) -> dict[str, uuid.UUID]:
    async with factory() as session:
        rows = await session.execute(
            text("SELECT meter_api_name, id FROM meters WHERE account_id = :a"), {"a": account_id}
        )
        return {name: meter for name, meter in rows.all()}


async def _per_meter(
    factory: SessionFactory, account_id: uuid.UUID, sql: str
) -> dict[uuid.UUID, int]:
    async with factory() as session:
        rows = await session.execute(text(sql), {"a": account_id})
        return {meter: int(total) for meter, total in rows.all()}


async def rolled_counts(factory: SessionFactory, account_id: uuid.UUID) -> dict[uuid.UUID, int]:
    return await _per_meter(
        factory,
        account_id,
        "SELECT meter_id, sum(count) FROM usage_rollups WHERE account_id = :a GROUP BY meter_id",
    )


async def raw_counts(factory: SessionFactory, account_id: uuid.UUID) -> dict[uuid.UUID, int]:
    return await _per_meter(
        factory,
        account_id,
        "SELECT meter_id, count(*) FROM meter_events WHERE account_id = :a "
        "AND cancelled_at IS NULL GROUP BY meter_id",
    )


async def test_a_meters_step_rolls_up_that_meter_alone(session_factory: SessionFactory) -> None:
    account = await seed(session_factory, 3000)
    ids = await meter_ids(session_factory, account)
    raw = await raw_counts(session_factory, account)

    async with unit_of_work(session_factory) as session:
        step = await rollups.rollup_account(
            session, account_id=account, meter_id=ids["s"], max_events=100_000
        )
    assert step.events == raw[ids["s"]] and not step.more
    assert {meter for meter, _ in step.touched} == {ids["s"]}
    assert await rolled_counts(session_factory, account) == {ids["s"]: raw[ids["s"]]}

    async with unit_of_work(session_factory) as session:
        rest = await rollups.rollup_account(session, account_id=account, max_events=100_000)
    assert rest.events == raw[ids["u"]]  # "s" had nothing new
    assert await rolled_counts(session_factory, account) == raw


async def test_two_meters_of_one_account_roll_up_side_by_side(
    session_factory: SessionFactory,
) -> None:
    """While one transaction holds meter "s"'s step (uncommitted), "u"'s step runs and commits:
    it does not wait for "s"; a second step of "s" does, and then finds nothing twice."""
    account = await seed(session_factory, 2000)
    ids = await meter_ids(session_factory, account)
    raw = await raw_counts(session_factory, account)

    async with unit_of_work(session_factory) as holding:
        await rollups.rollup_account(holding, account_id=account, meter_id=ids["s"])
        async with unit_of_work(session_factory) as other:
            stepped = await asyncio.wait_for(
                rollups.rollup_account(other, account_id=account, meter_id=ids["u"]), 10
            )
        assert stepped.events == raw[ids["u"]]
        waiting = asyncio.create_task(_step(session_factory, account, ids["s"]))
        await asyncio.sleep(0.5)
        assert not waiting.done(), "a second step of the same meter must wait for the first"
    second = await asyncio.wait_for(waiting, 10)
    assert second == 0  # the first step's events, committed, are not counted again
    assert await rolled_counts(session_factory, account) == raw


async def _step(factory: SessionFactory, account: uuid.UUID, meter: uuid.UUID) -> int:
    async with unit_of_work(factory) as session:
        step = await rollups.rollup_account(session, account_id=account, meter_id=meter)
    return step.events


async def test_a_meter_without_a_watermark_starts_from_its_accounts(
    session_factory: SessionFactory,
) -> None:
    """As after the upgrade: the account's watermark is where every meter stood."""
    account = await seed(session_factory, 1500)
    await rollup_to_end(session_factory, account)
    before = await snapshot(session_factory, account)
    async with unit_of_work(session_factory) as session:
        mark = await session.scalar(
            text("SELECT max(xid) FROM usage_meter_watermarks WHERE account_id = :a"),
            {"a": account},
        )
        await session.execute(
            text("DELETE FROM usage_meter_watermarks WHERE account_id = :a"), {"a": account}
        )
        await session.execute(
            text("INSERT INTO usage_watermarks (account_id, xid) VALUES (:a, :x)"),
            {"a": account, "x": mark},
        )
    async with session_factory() as session:
        assert await rollups.least_watermark(session, account) == int(mark)
    await rollup_to_end(session_factory, account)
    assert await snapshot(session_factory, account) == before  # nothing counted twice


async def test_the_sweep_finds_each_lagging_meter(session_factory: SessionFactory) -> None:
    account = await seed(session_factory, 600)
    ids = await meter_ids(session_factory, account)
    async with session_factory() as session:
        lagging = {pair for pair in await rollups.lagging_meters(session) if pair[0] == account}
    assert lagging == {(account, ids["s"]), (account, ids["u"])}
    async with unit_of_work(session_factory) as session:
        await rollups.rollup_account(session, account_id=account, meter_id=ids["u"])
    async with session_factory() as session:
        lagging = {pair for pair in await rollups.lagging_meters(session) if pair[0] == account}
        least = await rollups.least_watermark(session, account)
    assert lagging == {(account, ids["s"])}
    assert least is not None
