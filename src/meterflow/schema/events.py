from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types.arguments import InputContext

from meterflow.schema.errors import NotFoundProblem, ValidationProblem
from meterflow.schema.pagination import PageInfo
from meterflow.services import events
from meterflow.services.ingestion import IngestReport, Outcome
from meterflow.services.pagination import Page


@strawberry.enum
class EventOutcome(enum.Enum):
    ACCEPTED = "ACCEPTED"
    DUPLICATE = "DUPLICATE"
    REJECTED = "REJECTED"


@strawberry.input
class MeterEventInput:
    meter_api_name: str
    customer_id: str
    meter_value: Decimal = strawberry.field(
        description="A JSON number or a decimal string, read exactly (9007199254740993 keeps its "
        "last digit). A value that is not a finite number rejects this event alone."
    )
    meter_time_in_millis: Decimal = strawberry.field(
        description="Epoch milliseconds: a JSON number or a string (a Decimal, not a Float, so "
        "that any number, however large, reaches the event's own checks and rejects this event "
        "alone)."
    )
    unique_id: str | None = strawberry.field(
        default=None, description="Dedup key within the meter; without it the whole record is."
    )
    dimensions: JSON | None = strawberry.field(default=None, description="String → string.")


# The values graphql-core coerced for one event, keyed by GraphQL field name (meterValue ...).
MeterEventValues = Mapping[str, Any]


def _coerced_as_they_are(
    _cls: type, value: Mapping[str, Any], _context: InputContext
) -> MeterEventValues:
    """A MeterEventInput reaches its resolver as the mapping graphql-core coerced: the scalars
    are parsed by then (Decimal, JSON), and building a dataclass of it, field by field through
    Strawberry's generic conversion, cost more than the whole rest of a 1,000-event batch."""
    return value


MeterEventInput.__strawberry_definition__.from_input = _coerced_as_they_are  # type: ignore[attr-defined]


@strawberry.type
class EventOutcomeRow:
    index: int
    unique_id: str | None
    status: EventOutcome
    code: str | None
    message: str | None

    @classmethod
    def from_outcome(cls, outcome: Outcome) -> EventOutcomeRow:
        return cls(
            index=outcome.index,
            unique_id=outcome.unique_id,
            status=EventOutcome(outcome.status.value),
            code=outcome.code,
            message=outcome.message,
        )


@strawberry.type
class IngestResult:
    accepted: int
    duplicates: int
    rejected: int
    outcomes: list[EventOutcomeRow] = strawberry.field(
        description="One per input event, in input order."
    )

    @classmethod
    def from_report(cls, report: IngestReport) -> IngestResult:
        return cls(
            accepted=report.accepted,
            duplicates=report.duplicates,
            rejected=report.rejected,
            outcomes=[EventOutcomeRow.from_outcome(o) for o in report.outcomes],
        )


@strawberry.type
class MeterEvent:
    id: strawberry.ID = strawberry.field(description="The ingestion sequence number.")
    meter_api_name: str
    customer_id: str
    meter_value: Decimal
    event_time: datetime
    meter_time_in_millis: float
    unique_id: str | None
    dimensions: JSON
    payload: JSON = strawberry.field(description="The record exactly as it was ingested.")
    ingested_at: datetime
    cancelled_at: datetime | None
    invoice_id: strawberry.ID | None = strawberry.field(
        description="The invoice whose period this event falls in (none without a plan)."
    )
    plan_id: strawberry.ID | None
    late: bool = strawberry.field(
        description="Arrived after its invoice was finalized: in usage, billed nowhere."
    )

    @classmethod
    def from_stored(cls, event: events.StoredEvent) -> MeterEvent:
        return cls(
            id=strawberry.ID(str(event.seq)),
            meter_api_name=event.meter_api_name,
            customer_id=event.customer_id,
            meter_value=event.value,
            event_time=event.event_time,
            meter_time_in_millis=event.event_time.timestamp() * 1000,
            unique_id=event.unique_id,
            dimensions=JSON(event.dimensions),
            payload=JSON(json.loads(event.raw) if isinstance(event.raw, str) else event.raw),
            ingested_at=event.ingested_at,
            cancelled_at=event.cancelled_at,
            invoice_id=strawberry.ID(str(event.invoice_id)) if event.invoice_id else None,
            plan_id=strawberry.ID(str(event.plan_id)) if event.plan_id else None,
            late=bool(event.late),
        )


@strawberry.type
class MeterEventEdge:
    cursor: str
    node: MeterEvent


@strawberry.type
class MeterEventConnection:
    edges: list[MeterEventEdge]
    page_info: PageInfo

    @classmethod
    def from_page(cls, page: Page[events.StoredEvent]) -> MeterEventConnection:
        edges = [
            MeterEventEdge(cursor=events.encode_seq_cursor(e.seq), node=MeterEvent.from_stored(e))
            for e in page.items
        ]
        return cls(
            edges=edges,
            page_info=PageInfo.of(edges, page.has_next_page),
        )


@strawberry.input
class MeterEventFilter:
    meter_api_name: str | None = None
    customer_id: str | None = None
    start_time: datetime | None = strawberry.field(default=None, description="Event time, ≥.")
    end_time: datetime | None = strawberry.field(default=None, description="Event time, <.")
    include_cancelled: bool = False


@strawberry.type
class CancelledMeterEvents:
    cancelled: list[str]
    already_cancelled: list[str]
    not_found: list[str]


CancelResult = Annotated[
    CancelledMeterEvents | NotFoundProblem | ValidationProblem, strawberry.union("CancelResult")
]
