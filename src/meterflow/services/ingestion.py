"""Ingest a batch of meter event records exactly once.

Per batch, whatever its size: one query for the meters, at most two for customers (none once
they are known), one statement that claims identities and inserts the fresh events. Every
record gets an outcome.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import event, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, SessionTransaction
from sqlmodel import col

from meterflow.models import Account, Customer, IngestNotice, Meter, MeterStatus, MeterType
from meterflow.models.meter_event import UNIQUE_ID_MAX
from meterflow.services import assignments, webhook_events, webhook_payloads
from meterflow.services.event_records import EventRecord, RejectCode, Rejection, parse_record
from meterflow.services.sql import any_text
from meterflow.services.validation import storable

MAX_BATCH = 10_000


class Status(enum.StrEnum):
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"


@dataclass(slots=True)
class Outcome:
    index: int
    unique_id: str | None
    status: Status
    code: str | None = None
    message: str | None = None


@dataclass
class IngestReport:
    outcomes: list[Outcome]
    # Customers and meters whose usage changed: what rollups and live updates care about.
    customers: set[str] = field(default_factory=set)
    meters: set[str] = field(default_factory=set)
    meter_ids: set[uuid.UUID] = field(default_factory=set)  # the same meters, for their rollups

    def count(self, status: Status) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status is status)

    @property
    def accepted(self) -> int:
        return self.count(Status.ACCEPTED)

    @property
    def duplicates(self) -> int:
        return self.count(Status.DUPLICATE)

    @property
    def rejected(self) -> int:
        return self.count(Status.REJECTED)


@dataclass(frozen=True, slots=True)
class InvalidJson:
    """A record that could not even be decoded (one bad NDJSON line)."""

    reason: str


@dataclass(frozen=True, slots=True)
class RawRecord:
    """A record as decoded from the wire, with its JSON text for the By Event view."""

    data: Any
    raw: str


class BatchTooLarge(ValueError):
    def __init__(self, size: int) -> None:
        super().__init__(
            f"the batch has {size} records; the limit is {MAX_BATCH} per request: split it"
        )


@dataclass(frozen=True, slots=True)
class MeterRules:
    """What ingestion needs of a meter, as plain data (ORM attribute access is slow per event)."""

    id: uuid.UUID
    id_text: str
    meter_api_name: str
    status: MeterStatus
    meter_type: MeterType
    dimensions: tuple[str, ...]
    allowed: frozenset[str]
    aggregation_dimension: str | None

    @classmethod
    def of(cls, meter: Meter) -> MeterRules:
        return cls(
            id=meter.id,
            id_text=str(meter.id),
            meter_api_name=meter.meter_api_name,
            status=meter.status,
            meter_type=meter.meter_type,
            dimensions=tuple(meter.dimensions),
            allowed=frozenset(meter.dimensions),
            aggregation_dimension=meter.aggregation_dimension,
        )


def check_against_meter(record: EventRecord, meter: MeterRules | None) -> Rejection | None:
    if meter is None:
        return Rejection(
            RejectCode.UNKNOWN_METER, f"no meter {record.meter_api_name!r} in this account"
        )
    if meter.status is MeterStatus.DEPRECATED:
        return Rejection(
            RejectCode.DEPRECATED_METER,
            f"meter {record.meter_api_name!r} is deprecated and takes no new events",
        )
    if meter.allowed and record.dimensions and not meter.allowed.issuperset(record.dimensions):
        unknown = sorted(set(record.dimensions) - meter.allowed)
        return Rejection(
            RejectCode.UNKNOWN_DIMENSION,
            f"dimension {unknown[0]!r} is not one of meter "
            f"{meter.meter_api_name!r}'s dimensions {list(meter.dimensions)}",
        )
    aggregation = meter.aggregation_dimension
    if (
        meter.meter_type is MeterType.UNIQUE_COUNT
        and aggregation
        and aggregation not in record.dimensions
    ):
        return Rejection(
            RejectCode.MISSING_DIMENSION,
            f"meter {meter.meter_api_name!r} counts distinct {aggregation!r}: "
            "the event must carry it",
        )
    if meter.meter_type is MeterType.DURATION and record.value not in (0, 1):
        return Rejection(
            RejectCode.INVALID_VALUE,
            "a DURATION meter takes 1 (the resource started) or 0 (it stopped), "
            f"got {record.value}",
        )
    return None


class KnownCustomers:
    """Customer ids seen to exist, per account, in this process.

    Customers are never deleted, so a hit is always true; a miss only means asking the
    database. Bounded: cleared when it grows past `limit` ids.
    """

    def __init__(self, limit: int = 500_000) -> None:
        self.limit = limit
        self._known: dict[uuid.UUID, set[str]] = {}
        self._size = 0

    def unsure(self, account_id: uuid.UUID, customer_ids: set[str]) -> set[str]:
        return customer_ids - self._known.get(account_id, set())

    def add(self, account_id: uuid.UUID, customer_ids: set[str]) -> None:
        if self._size + len(customer_ids) > self.limit:
            self._known.clear()
            self._size = 0
        known = self._known.setdefault(account_id, set())
        before = len(known)
        known |= customer_ids
        self._size += len(known) - before


known_customers = KnownCustomers()


async def _meters_by_name(
    session: AsyncSession, account_id: uuid.UUID, names: set[str]
) -> dict[str, MeterRules]:
    # Read per batch, never cached: a deprecation must take effect on the next request.
    rows = await session.scalars(
        select(Meter).where(
            col(Meter.account_id) == account_id,
            col(Meter.meter_api_name) == any_text(names),
        )
    )
    return {meter.meter_api_name: MeterRules.of(meter) for meter in rows}


async def _known_customers(
    session: AsyncSession, account_id: uuid.UUID, customer_ids: set[str], now: datetime
) -> set[str]:
    """The customer ids that exist, creating the missing ones when the account allows it.

    Only the customers this transaction created join the default plan: a concurrent batch
    that created the same customer first (its row wins the unique key) assigns it itself, so
    concurrent first events never give a customer two assignments."""
    unsure = known_customers.unsure(account_id, customer_ids)
    if not unsure:
        return customer_ids
    # One index probe per id named: with `customer_id = ANY(...)` PostgreSQL's generic plan
    # (from the sixth batch on) scanned the account's customers and filtered, 10x slower at
    # 50,000 customers.
    existing = set(
        (
            await session.execute(
                text(
                    "SELECT c.customer_id FROM unnest(CAST(:ids AS text[])) AS named(id) "
                    "JOIN customers c ON c.account_id = :account_id AND c.customer_id = named.id"
                ),
                {"ids": sorted(unsure), "account_id": account_id},
            )
        ).scalars()
    )
    # Rows that already exist are safe to remember now; ones created below only after commit
    # (the transaction may roll back), which the next batch's lookup takes care of.
    known_customers.add(account_id, existing)
    missing = unsure - existing
    if not missing:
        return customer_ids
    auto_create = await session.scalar(
        select(col(Account.auto_create_customers)).where(col(Account.id) == account_id)
    )
    if not auto_create:
        return customer_ids - missing
    created = await session.scalars(
        insert(Customer)
        .values(
            [
                {
                    "account_id": account_id,
                    "id": uuid.uuid4(),
                    "customer_id": customer_id,
                    "name": customer_id,  # Amberflo names auto-created customers by their id
                    "traits": {},
                    "enabled": True,
                }
                for customer_id in sorted(missing)
            ]
        )
        .on_conflict_do_nothing(constraint="uq_customers_account_customer_id")
        .returning(Customer)
    )
    new_customers = list(created)
    await webhook_events.notify(
        session,
        account_id=account_id,
        event_type="customer.created",
        build=lambda: [
            ({"customer": webhook_payloads.customer(c)}, c.customer_id) for c in new_customers
        ],
        now=now,
    )
    await assignments.assign_default_plan(
        session, account_id=account_id, customer_ids={c.customer_id for c in new_customers}, now=now
    )
    return customer_ids


# Identities are claimed first; only the rows whose identity was new are inserted. A duplicate
# (from an earlier batch or a concurrent request) finds its identity taken and inserts nothing.
# The result is the input positions of the inserted rows.
#
# Columns travel as one text each, split by PostgreSQL: asyncpg's array encoding checked every
# element against three ABCs, 3.1 µs an event for the eight columns; joined, 0.4 (bench notes
# in docs/scaling.md). The separator is a control character that none of those texts holds raw
# (`event_columns`); the identity, which may hold anything a uniqueId does, stays an array. The
# time travels as epoch milliseconds (exact: the double product stays far below 2^53 µs for any
# accepted time), and the uniqueId is the identity's own ("u:" + uniqueId).
INSERT_EVENTS = """
WITH input AS (
    SELECT nextval('meter_event_seq') AS seq, t.meter_id, t.customer_id, t.identity,
           timestamptz 'epoch' + t.millis * interval '1 millisecond' AS event_time,
           t.value, t.dimensions, t.raw, t.n
    FROM unnest(string_to_array($2, $9)::uuid[], string_to_array($3, $9), $4::text[],
                string_to_array($5, $9)::bigint[], string_to_array($6, $9)::numeric[],
                string_to_array($7, $9)::jsonb[], string_to_array($8, $9)::json[])
         WITH ORDINALITY AS t(meter_id, customer_id, identity, millis, value, dimensions, raw, n)
), fresh AS (
    INSERT INTO meter_event_identities (account_id, meter_id, identity, event_time, seq)
    SELECT $1, meter_id, identity, event_time, seq FROM input
    -- One lock order for every batch, so concurrent batches never deadlock.
    ORDER BY meter_id, identity
    ON CONFLICT DO NOTHING
    RETURNING seq
), inserted AS (
    INSERT INTO meter_events (account_id, seq, meter_id, customer_id, identity, event_time,
                              value, unique_id, dimensions, raw)
    SELECT $1, i.seq, i.meter_id, i.customer_id, i.identity, i.event_time, i.value,
           CASE WHEN left(i.identity, 2) = 'u:' THEN substr(i.identity, 3) END,
           i.dimensions, i.raw
    FROM input i WHERE i.seq IN (SELECT seq FROM fresh)
)
SELECT array_agg(i.n) FROM input i WHERE i.seq IN (SELECT seq FROM fresh)
"""
SEPARATOR = "\x1e"


def _joined(values: list[str]) -> str:
    text = SEPARATOR.join(values)
    # Never true by construction (see event_columns); a miscount would misalign the rows.
    if text.count(SEPARATOR) != len(values) - 1:
        raise ValueError("an ingest column holds the column separator")
    return text


@dataclass(frozen=True, slots=True)
class EventColumns:
    """A batch's fresh events as INSERT_EVENTS takes them ($2 to $9)."""

    meter_ids: str
    customer_ids: str
    identities: list[str]
    millis: str
    values: str
    dimensions: str
    raws: str
    separator: str = SEPARATOR

    def arguments(self) -> tuple[Any, ...]:
        return (
            self.meter_ids,
            self.customer_ids,
            self.identities,
            self.millis,
            self.values,
            self.dimensions,
            self.raws,
            self.separator,
        )


def event_columns(
    meter_ids: list[str],
    records: Sequence[EventRecord],
    identities: list[str],
) -> EventColumns:
    """The columns of these records. None of the joined texts can hold the separator raw: meter
    ids are uuids, customer ids exclude control characters (CUSTOMER_ID_RE), values and times
    are numbers, and the dimensions and the record's text are JSON, whose strings escape every
    control character."""
    return EventColumns(
        meter_ids=_joined(meter_ids),
        customer_ids=_joined([r.customer_id for r in records]),
        identities=identities,
        millis=_joined([str(r.time_millis) for r in records]),
        values=_joined([str(r.value) for r in records]),
        dimensions=_joined([orjson.dumps(r.dimensions).decode() for r in records]),
        raws=_joined([r.raw for r in records]),
    )


Month = tuple[int, int]
# Months whose partition is known to exist: added only once the transaction that created
# (or saw) it has committed, since a rollback takes a new partition with it.
_known_partitions: set[Month] = set()
_PENDING_PARTITIONS = "meterflow.pending_partitions"


async def _ensure_partitions(session: AsyncSession, driver: Any, times: Sequence[datetime]) -> None:
    """Create the monthly partitions these times fall in (once per month per process)."""
    months = {(t.year, t.month): t for t in times}
    missing = [t for key, t in months.items() if key not in _known_partitions]
    if missing:
        await driver.execute(
            "SELECT meterflow_ensure_event_partition(t) FROM unnest($1::timestamptz[]) AS t",
            missing,
        )
        _remember_after_commit(session.sync_session, {(t.year, t.month) for t in missing})


def _remember_after_commit(session: Session, months: set[Month]) -> None:
    pending: set[Month] | None = session.info.get(_PENDING_PARTITIONS)
    if pending is None:  # once per session, and only in a batch that met a new month
        pending = session.info[_PENDING_PARTITIONS] = set()
        event.listen(session, "after_commit", _partitions_committed)
        event.listen(session, "after_soft_rollback", _partitions_rolled_back)
        event.listen(session, "after_transaction_end", _partitions_transaction_ended)
    pending |= months


def _partitions_committed(session: Session) -> None:
    # after_commit also fires when a savepoint is released: only the outermost commit counts.
    if not session.in_nested_transaction():
        _known_partitions.update(session.info[_PENDING_PARTITIONS])


def _partitions_rolled_back(session: Session, previous_transaction: SessionTransaction) -> None:
    # Any rollback, a savepoint's too, may have taken the partitions with it: forget them
    # (at worst the next batch asks PostgreSQL again, which is cheap and idempotent).
    session.info[_PENDING_PARTITIONS].clear()


def _partitions_transaction_ended(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:  # committed (remembered above), rolled back or closed
        session.info[_PENDING_PARTITIONS].clear()


@dataclass(slots=True)  # (not frozen: one per event, and a frozen __init__ costs twice as much)
class Candidate:
    """A valid record for a live meter, not repeated earlier in its batch."""

    index: int
    record: EventRecord
    meter: MeterRules
    identity: str


def _parse_all(
    records: Sequence[RawRecord], now: datetime
) -> tuple[list[Outcome], list[tuple[int, EventRecord]]]:
    outcomes: list[Outcome] = []
    parsed: list[tuple[int, EventRecord]] = []
    for index, raw in enumerate(records):
        result = (
            Rejection(RejectCode.MALFORMED_RECORD, f"not valid JSON: {raw.data.reason}")
            if isinstance(raw.data, InvalidJson)
            else parse_record(raw.data, raw.raw, now)
        )
        if isinstance(result, Rejection):
            unique_id = raw.data.get("uniqueId") if isinstance(raw.data, dict) else None
            outcomes.append(
                Outcome(
                    index,
                    # Echoed only if it can be encoded in the answer and is not a megabyte.
                    unique_id
                    if isinstance(unique_id, str)
                    and len(unique_id) <= UNIQUE_ID_MAX
                    and storable(unique_id)
                    else None,
                    Status.REJECTED,
                    result.code,
                    result.message,
                )
            )
        else:
            outcomes.append(Outcome(index, result.unique_id, Status.ACCEPTED))
            parsed.append((index, result))
    return outcomes, parsed


def _against_meters(
    parsed: list[tuple[int, EventRecord]],
    meters: dict[str, MeterRules],
    outcomes: list[Outcome],
) -> list[Candidate]:
    candidates: list[Candidate] = []
    seen: set[tuple[uuid.UUID, str]] = set()
    for index, record in parsed:
        meter = meters.get(record.meter_api_name)
        rejection = check_against_meter(record, meter)
        if rejection is not None:
            _reject(outcomes[index], rejection)
            continue
        assert meter is not None
        identity = record.identity
        if (meter.id, identity) in seen:  # repeated inside this very batch
            outcomes[index].status = Status.DUPLICATE
            continue
        seen.add((meter.id, identity))
        candidates.append(Candidate(index, record, meter, identity))
    return candidates


async def _ingest(
    session: AsyncSession, *, account_id: uuid.UUID, records: Sequence[RawRecord], now: datetime
) -> IngestReport:
    if len(records) > MAX_BATCH:
        raise BatchTooLarge(len(records))
    outcomes, parsed = _parse_all(records, now)
    return await _ingest_parsed(session, account_id, outcomes, parsed, now)


async def _ingest_parsed(
    session: AsyncSession,
    account_id: uuid.UUID,
    outcomes: list[Outcome],
    parsed: list[tuple[int, EventRecord]],
    now: datetime,
) -> IngestReport:
    report = IngestReport(outcomes)
    if not parsed:
        return report

    meters = await _meters_by_name(session, account_id, {r.meter_api_name for _, r in parsed})
    candidates = _against_meters(parsed, meters, outcomes)
    if not candidates:
        return report

    known = await _known_customers(
        session, account_id, {c.record.customer_id for c in candidates}, now
    )
    for candidate in candidates:
        if candidate.record.customer_id not in known:
            _reject(
                outcomes[candidate.index],
                Rejection(
                    RejectCode.UNKNOWN_CUSTOMER,
                    f"no customer {candidate.record.customer_id!r}, and this account does not "
                    "create customers from events",
                ),
            )
    candidates = [c for c in candidates if c.record.customer_id in known]
    if not candidates:
        return report

    driver = await _driver_connection(session)
    await _ensure_partitions(session, driver, [c.record.time for c in candidates])
    columns = event_columns(
        [c.meter.id_text for c in candidates],
        [c.record for c in candidates],
        [c.identity for c in candidates],
    )
    positions = await driver.fetchval(INSERT_EVENTS, account_id, *columns.arguments())
    fresh = set(positions or ())
    for position, candidate in enumerate(candidates, 1):
        if position in fresh:
            report.customers.add(candidate.record.customer_id)
            report.meters.add(candidate.meter.meter_api_name)
            report.meter_ids.add(candidate.meter.id)
        else:  # taken by an earlier batch, or by a concurrent one that committed first
            outcomes[candidate.index].status = Status.DUPLICATE
    return report


NOTICE_KINDS = {
    RejectCode.UNKNOWN_METER: "UNDEFINED_METER",
    RejectCode.UNKNOWN_CUSTOMER: "UNDEFINED_CUSTOMER",
}


async def record_notices(
    session: AsyncSession,
    account_id: uuid.UUID,
    records: Sequence[RawRecord],
    outcomes: list[Outcome],
) -> None:
    """Count what events named that does not exist, so an operator sees a misconfigured
    producer (a typo in a meter name, customers not created) instead of silent rejections."""
    seen: dict[tuple[str, str], int] = {}
    for outcome in outcomes:
        kind = NOTICE_KINDS.get(RejectCode(outcome.code)) if outcome.code else None
        if kind is None:
            continue
        data = records[outcome.index].data
        field = "meterApiName" if kind == "UNDEFINED_METER" else "customerId"
        subject = str(data.get(field, ""))[:200] if isinstance(data, dict) else ""
        seen[(kind, subject)] = seen.get((kind, subject), 0) + 1
    if not seen:
        return
    statement = insert(IngestNotice).values(
        [
            {"account_id": account_id, "kind": k, "subject": s, "count": n}
            for (k, s), n in sorted(seen.items())
        ]
    )
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["account_id", "kind", "subject"],
            set_={
                "count": IngestNotice.count + statement.excluded.count,
                "last_seen_at": func.clock_timestamp(),
            },
        )
    )


def _reject(outcome: Outcome, rejection: Rejection) -> None:
    outcome.status = Status.REJECTED
    outcome.code = rejection.code
    outcome.message = rejection.message


async def _driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's transaction, for array-bound bulk SQL."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    return raw.driver_connection


async def ingest_checked(
    session: AsyncSession, *, account_id: uuid.UUID, records: Sequence[EventRecord], now: datetime
) -> IngestReport:
    """Ingest records whose own fields are checked already (record_decoding.valid_batch): the
    meters', customers' and dedup's outcomes are decided here, as for `ingest`."""
    if len(records) > MAX_BATCH:
        raise BatchTooLarge(len(records))
    outcomes = [Outcome(i, r.unique_id, Status.ACCEPTED) for i, r in enumerate(records)]
    report = await _ingest_parsed(session, account_id, outcomes, list(enumerate(records)), now)
    if report.rejected:
        named = [
            RawRecord({"meterApiName": r.meter_api_name, "customerId": r.customer_id}, r.raw)
            for r in records
        ]
        await record_notices(session, account_id, named, report.outcomes)
    return report


async def ingest(
    session: AsyncSession, *, account_id: uuid.UUID, records: Sequence[RawRecord], now: datetime
) -> IngestReport:
    """Ingest a batch; every record gets an outcome (see _ingest), and undefined meters and
    customers the batch named are counted as notices in the same transaction."""
    report = await _ingest(session, account_id=account_id, records=records, now=now)
    if report.rejected:
        await record_notices(session, account_id, records, report.outcomes)
    return report
