"""meter_events and meter_event_identities carry no foreign key (its per-row check was a third
of the ingest write, migration 0019); deleting an account still deletes its events, as the
cascade did, and nobody else's."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from meterflow.db import SessionFactory, unit_of_work
from meterflow.services import ingestion
from tests.billing_setup import per_unit_account


async def _account_with_events(factory: SessionFactory, name: str, count: int) -> uuid.UUID:
    now = datetime.now(UTC)
    async with unit_of_work(factory) as session:
        account_id, _ = await per_unit_account(
            session, name=name, unit_price="1", is_default=True, now=now
        )
    records = []
    for n in range(count):
        data = {
            "meterApiName": "calls",
            "customerId": f"c{n % 3}",
            "meterValue": n + 1,
            "uniqueId": f"{name}-{n}",
            "meterTimeInMillis": int((now - timedelta(minutes=n)).timestamp() * 1000),
        }
        records.append(ingestion.RawRecord(data, json.dumps(data)))
    async with unit_of_work(factory) as session:
        report = await ingestion.ingest(session, account_id=account_id, records=records, now=now)
    assert report.accepted == count
    return account_id


async def _counts(factory: SessionFactory, account_id: uuid.UUID) -> tuple[int, int]:
    async with factory() as session:
        events = await session.scalar(
            text("SELECT count(*) FROM meter_events WHERE account_id = :a"), {"a": account_id}
        )
        identities = await session.scalar(
            text("SELECT count(*) FROM meter_event_identities WHERE account_id = :a"),
            {"a": account_id},
        )
    return int(events or 0), int(identities or 0)


async def test_event_tables_have_no_per_row_foreign_key_check(
    session_factory: SessionFactory,
) -> None:
    async with session_factory() as session:
        foreign_keys = (
            await session.execute(
                text(
                    "SELECT conrelid::regclass::text FROM pg_constraint WHERE contype = 'f' "
                    "AND conrelid::regclass::text LIKE ANY "
                    "(ARRAY['meter_events%', 'meter_event_identities'])"
                )
            )
        ).all()
    assert foreign_keys == []


async def test_deleting_an_account_deletes_its_events_and_no_one_elses(
    session_factory: SessionFactory,
) -> None:
    gone = await _account_with_events(session_factory, "gone", 5)
    kept = await _account_with_events(session_factory, "kept", 4)
    assert await _counts(session_factory, gone) == (5, 5)

    async with unit_of_work(session_factory) as session:
        await session.execute(text("DELETE FROM accounts WHERE id = :a"), {"a": gone})

    assert await _counts(session_factory, gone) == (0, 0)
    assert await _counts(session_factory, kept) == (4, 4)
