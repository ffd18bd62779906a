from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated

import orjson
import strawberry
from graphql import GraphQLError

from meterflow.db import is_transient
from meterflow.pubsub import event_channels
from meterflow.resolvers.base import Info, mutate, require_account_key, require_admin
from meterflow.schema.event_variables import typed_events
from meterflow.schema.events import (
    CancelledMeterEvents,
    CancelResult,
    IngestResult,
    MeterEventConnection,
    MeterEventFilter,
    MeterEventInput,
    MeterEventValues,
)
from meterflow.schema.scalars import NotANumber
from meterflow.services import events, ingestion, record_decoding
from meterflow.services.event_records import EventRecord
from meterflow.services.pagination import page_size


def _value(number: Decimal) -> tuple[Decimal | str, str]:
    """The event's value for its checks, and its JSON text for the stored payload: a finite
    number as the exact number it is (orjson cannot write a Decimal), anything else as the
    string it came as, which the checks reject with its reason."""
    if isinstance(number, NotANumber):
        return number.text, json.dumps(number.text)
    if not number.is_finite():
        return number, json.dumps(str(number))
    return number, str(number)


def _millis(number: Decimal) -> int | str:
    """Epoch milliseconds for the checks and the stored payload: a whole number as an int (the
    common case), anything else as the text it came as, for the checks to reject precisely."""
    if isinstance(number, NotANumber):
        return number.text
    if number.is_finite() and number.adjusted() <= 15 and number == number.to_integral_value():
        return int(number)
    return str(number)


def _record(event: MeterEventValues, placeholder: str) -> ingestion.RawRecord:
    value, value_text = _value(event["meterValue"])
    data = record_decoding.graphql_payload(
        event["meterApiName"],
        event["customerId"],
        value,
        _millis(event["meterTimeInMillis"]),
        event.get("uniqueId"),
        event.get("dimensions"),
    )
    # The value goes into the text as written: a placeholder no client can guess (made after
    # the request arrived, one a batch), replaced once.
    raw = {
        **data,
        "meterValue": placeholder,
    }
    try:
        text = orjson.dumps(raw).decode()
    except orjson.JSONEncodeError:
        # A lone surrogate (or dimensions too deep for orjson): escaped text, so that the
        # record's checks see it and reject the event with the precise code.
        try:
            text = json.dumps(raw)
        except (ValueError, RecursionError):
            text = json.dumps({**raw, "dimensions": None})  # rejected for its dimensions
    return ingestion.RawRecord(data, text.replace(f'"{placeholder}"', value_text, 1))


@strawberry.type
class EventQueries:
    @strawberry.field(
        description="The By Event view: stored events in ingestion order, or with newestFirst "
        "the latest first (then `after` pages to older ones)."
    )
    async def meter_events(
        self,
        info: Info,
        filter: MeterEventFilter | None = None,
        first: int | None = None,
        after: str | None = None,
        newest_first: bool = False,
    ) -> MeterEventConnection:
        principal = require_admin(info)
        limit = page_size(first, maximum=info.context.max_page_size)
        wanted = filter or MeterEventFilter()
        async with info.context.session_factory() as session:
            page = await events.list_events(
                session,
                account_id=principal.account_id,
                filter=events.EventFilter(
                    meter_api_name=wanted.meter_api_name,
                    customer_id=wanted.customer_id,
                    start_time=wanted.start_time,
                    end_time=wanted.end_time,
                    include_cancelled=wanted.include_cancelled,
                ),
                limit=limit,
                after=after,
                newest_first=newest_first,
            )
        return MeterEventConnection.from_page(page)


@strawberry.type
class EventMutations:
    @strawberry.mutation(description="Ingest a batch (≤ 10,000); one outcome per event.")
    async def ingest_meter_events(
        self,
        info: Info,
        events: Annotated[
            list[MeterEventValues], strawberry.argument(graphql_type=list[MeterEventInput])
        ],
    ) -> IngestResult:
        principal = require_account_key(info)  # ingest-scoped keys may call this
        now = datetime.now(UTC)
        checked: list[EventRecord] | None = None
        typed = typed_events(info._raw_info.field_nodes[0], "events", info.variable_values)
        if typed is not None:  # a variable msgspec converted: plainly valid, or the exact path
            checked = record_decoding.valid_graphql_batch(typed.events, now)
            if checked is None:
                events = typed.coerce() or []
        size = len(events) if checked is None else len(checked)
        if size > ingestion.MAX_BATCH:
            raise GraphQLError(
                str(ingestion.BatchTooLarge(size)), extensions={"code": "BATCH_TOO_LARGE"}
            )
        placeholder = f"meterflow-value-{uuid.uuid4()}"
        try:
            async with info.context.unit_of_work() as session:
                if checked is not None:
                    report = await ingestion.ingest_checked(
                        session, account_id=principal.account_id, records=checked, now=now
                    )
                else:
                    report = await ingestion.ingest(
                        session,
                        account_id=principal.account_id,
                        records=[_record(event, placeholder) for event in events],
                        now=now,
                    )
        except Exception as exc:
            if is_transient(exc):
                raise GraphQLError(
                    "the database is unavailable; retry shortly", extensions={"code": "UNAVAILABLE"}
                ) from exc
            raise
        if report.accepted and info.context.jobs is not None:
            await info.context.jobs.request_rollup(principal.account_id, report.meter_ids)
        if report.accepted:
            await info.context.publish(*event_channels(principal.account_id, report.meters))
        return IngestResult.from_report(report)

    @strawberry.mutation(description="Exclude events from usage by uniqueId.")
    async def cancel_meter_events(
        self, info: Info, meter_api_name: str, unique_ids: list[str]
    ) -> CancelResult:
        result = await mutate(
            info,
            lambda session, principal: events.cancel_events(
                session,
                account_id=principal.account_id,
                meter_api_name=meter_api_name,
                unique_ids=unique_ids,
            ),
            lambda report: CancelledMeterEvents(
                cancelled=report.cancelled,
                already_cancelled=report.already_cancelled,
                not_found=report.not_found,
            ),
        )
        if isinstance(result, CancelledMeterEvents) and result.cancelled and info.context.jobs:
            principal = require_admin(info)
            await info.context.jobs.request_rollup(principal.account_id)
        return result
