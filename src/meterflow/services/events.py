"""Reading and cancelling stored meter events (the By Event view)."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.errors import NotFoundError, ValidationError
from meterflow.services import meters
from meterflow.services.pagination import Page

MAX_CANCEL = 10_000

# Each event with the invoice (and so the plan) whose period it falls in. An event is late when
# it arrived after that invoice was finalized: stored and counted in usage, billed nowhere.
LIST_EVENTS = (
    "SELECT e.seq, m.meter_api_name, e.customer_id, e.value, e.event_time, e.unique_id, "
    "e.dimensions, e.raw, e.ingested_at, e.cancelled_at, i.id, i.plan_id, "
    "(i.finalized_at IS NOT NULL AND e.ingested_at > i.finalized_at) "
    "FROM meter_events e JOIN meters m ON m.account_id = e.account_id AND m.id = e.meter_id "
    "LEFT JOIN invoices i ON i.account_id = e.account_id AND i.customer_id = e.customer_id "
    "  AND e.event_time >= i.period_start AND e.event_time < i.period_end "
    "  AND i.status <> 'VOID' "
    "WHERE {where} ORDER BY e.seq LIMIT :limit"
)


@dataclass(frozen=True)
class EventFilter:
    meter_api_name: str | None = None
    customer_id: str | None = None
    start_time: datetime | None = None  # event time, inclusive
    end_time: datetime | None = None  # event time, exclusive
    include_cancelled: bool = False


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    meter_api_name: str
    customer_id: str
    value: Decimal
    event_time: datetime
    unique_id: str | None
    dimensions: dict[str, str]
    raw: Any
    ingested_at: datetime
    cancelled_at: datetime | None
    invoice_id: uuid.UUID | None = None
    plan_id: uuid.UUID | None = None
    late: bool | None = False


@dataclass(frozen=True)
class CancelReport:
    cancelled: list[str]
    already_cancelled: list[str]
    not_found: list[str]


def encode_seq_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"seq:{seq}".encode()).decode()


def decode_seq_cursor(cursor: str) -> int:
    try:
        kind, _, number = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        if kind != "seq":
            raise ValueError(kind)
        return int(number)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError("after is not a cursor this API returned", field="after") from exc


async def list_events(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    filter: EventFilter,
    limit: int,
    after: str | None = None,
    newest_first: bool = False,
) -> Page[StoredEvent]:
    """Events in ingestion order, or newest first (a live tail's first page, then older ones).
    Cancelled ones are left out unless asked for."""
    clauses = ["e.account_id = :account_id"]
    params: dict[str, Any] = {"account_id": account_id, "limit": limit + 1}
    if after:
        clauses.append("e.seq < :after" if newest_first else "e.seq > :after")
        params["after"] = decode_seq_cursor(after)
    if filter.meter_api_name is not None:
        clauses.append("m.meter_api_name = :meter_api_name")
        params["meter_api_name"] = filter.meter_api_name
    if filter.customer_id is not None:
        clauses.append("e.customer_id = :customer_id")
        params["customer_id"] = filter.customer_id
    if filter.start_time is not None:
        clauses.append("e.event_time >= :start_time")
        params["start_time"] = filter.start_time
    if filter.end_time is not None:
        clauses.append("e.event_time < :end_time")
        params["end_time"] = filter.end_time
    if not filter.include_cancelled:
        clauses.append("e.cancelled_at IS NULL")
    # Only the fixed clauses above are joined in; every value is a bound parameter.
    where = " AND ".join(clauses)
    sql = LIST_EVENTS.format(where=where)
    if newest_first:
        sql = sql.replace("ORDER BY e.seq", "ORDER BY e.seq DESC")
    rows = (await session.execute(text(sql), params)).all()
    events = [StoredEvent(*row) for row in rows]
    return Page(items=events[:limit], has_next_page=len(events) > limit)


async def latest_events(
    session: AsyncSession, *, account_id: uuid.UUID, meter_api_name: str | None, limit: int
) -> list[StoredEvent]:
    """The newest events (not cancelled), oldest first."""
    clauses = ["e.account_id = :account_id", "e.cancelled_at IS NULL"]
    params: dict[str, Any] = {"account_id": account_id, "limit": limit}
    if meter_api_name is not None:
        clauses.append("m.meter_api_name = :meter_api_name")
        params["meter_api_name"] = meter_api_name
    query = LIST_EVENTS.format(where=" AND ".join(clauses)).replace(
        "ORDER BY e.seq", "ORDER BY e.seq DESC"
    )
    rows = (await session.execute(text(query), params)).all()
    return [StoredEvent(*row) for row in reversed(rows)]


async def cancel_events(
    session: AsyncSession, *, account_id: uuid.UUID, meter_api_name: str, unique_ids: list[str]
) -> CancelReport:
    """Exclude events from usage (and from invoices not yet finalized) by their uniqueId."""
    if len(unique_ids) > MAX_CANCEL:
        raise ValidationError(f"at most {MAX_CANCEL} uniqueIds per call", field="uniqueIds")
    meter = await meters.get_meter(session, account_id=account_id, meter_api_name=meter_api_name)
    if meter is None:
        raise NotFoundError(f"no meter {meter_api_name!r} in this account")
    wanted = list(dict.fromkeys(unique_ids))
    identities = ["u:" + unique_id for unique_id in wanted]
    rows = (
        await session.execute(
            text(
                "WITH target AS ("
                "  SELECT identity, event_time, seq FROM meter_event_identities"
                "  WHERE account_id = :account_id AND meter_id = :meter_id"
                "    AND identity = ANY(:identities)"
                "), cancelled AS ("
                "  UPDATE meter_events e SET cancelled_at = now(), "
                "    cancel_xid = pg_current_xact_id()"
                "  FROM target t WHERE e.account_id = :account_id AND e.event_time = t.event_time"
                "    AND e.seq = t.seq AND e.cancelled_at IS NULL"
                "  RETURNING t.identity"
                ") SELECT t.identity, (c.identity IS NOT NULL) AS now_cancelled FROM target t"
                "  LEFT JOIN cancelled c USING (identity)"
            ),
            {"account_id": account_id, "meter_id": meter.id, "identities": identities},
        )
    ).all()
    found = {identity[2:]: now for identity, now in rows}
    return CancelReport(
        cancelled=[u for u in wanted if found.get(u) is True],
        already_cancelled=[u for u in wanted if found.get(u) is False],
        not_found=[u for u in wanted if u not in found],
    )
