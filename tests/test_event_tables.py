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


async def test_times_values_and_unique_ids_are_stored_exactly(
    session_factory: SessionFactory,
) -> None:
    """The write binds times as epoch milliseconds, values as their text and takes the uniqueId
    from the identity: each stored column equals what the record said, to the millisecond and
    the last digit."""
    now = datetime.now(UTC)
    async with unit_of_work(session_factory) as session:
        account_id, _ = await per_unit_account(
            session, name="exact", unit_price="1", is_default=True, now=now
        )
    now_ms = int(now.timestamp() * 1000)
    cases = [
        # (meterTimeInMillis, meterValue, uniqueId)
        (946_684_800_001, "999999999999999999.999999999999", "first"),
        (now_ms - 1, "1E+3", "u:looks-like-an-identity"),
        (now_ms - 2, -0.5, None),
        (now_ms + 60_000, "0.000000000001", "a\u001eb"),  # the column separator, raw
        (1_733_011_199_999, 7, ""),
    ]
    records = []
    for millis, value, unique_id in cases:
        data: dict[str, object] = {
            "meterApiName": "calls",
            "customerId": "c1",
            "meterValue": value,
            "meterTimeInMillis": millis,
        }
        if unique_id is not None:
            data["uniqueId"] = unique_id
        records.append(ingestion.RawRecord(data, json.dumps(data)))
    async with unit_of_work(session_factory) as session:
        report = await ingestion.ingest(session, account_id=account_id, records=records, now=now)
    assert [(o.status, o.message) for o in report.outcomes] == [
        (ingestion.Status.ACCEPTED, None)
    ] * len(cases)
    async with session_factory() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT event_time, value::text, unique_id, identity FROM meter_events "
                    "WHERE account_id = :a ORDER BY seq"
                ),
                {"a": account_id},
            )
        ).all()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert [row[0] for row in rows] == [epoch + timedelta(milliseconds=c[0]) for c in cases]
    assert [row[1] for row in rows] == [
        "999999999999999999.999999999999",
        "1000",
        "-0.5",
        "0.000000000001",
        "7",
    ]
    assert [row[2] for row in rows] == [
        "first",
        "u:looks-like-an-identity",
        None,
        "a\u001eb",
        None,  # "" is no uniqueId: the record's hash is its identity
    ]
    assert [row[3][:2] for row in rows] == ["u:", "u:", "h:", "u:", "h:"]
