"""Typed, compiled decoding of a batch of meter event records (msgspec): the common case of
ingestion — a JSON array of plainly valid records — checked in C as far as C can check it.

`valid_batch` answers every record of such a body as an `EventRecord`, exactly as
`event_records.parse_record` would, or None as soon as one record is not plainly valid (a
wrong type, a missing field, a value or time out of bounds, a character that needs a closer
look, a long number). None sends the whole body down the exact path (wire.decode, then
parse_record per record), which gives each record its precise outcome and code: the fast path
never decides a rejection, so the outcomes are those of the exact path by construction.

Each record keeps its own text from the body (msgspec.Raw), as the exact path does.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import orjson

from meterflow.models.meter_event import UNIQUE_ID_MAX
from meterflow.services.customers import CUSTOMER_ID_RE
from meterflow.services.event_records import (
    DIMENSION_VALUE_MAX,
    EARLIEST_MILLIS,
    EPOCH,
    MAX_DIMENSIONS_PER_EVENT,
    MAX_FUTURE,
    MAX_RECORD_BYTES,
    MAX_VALUE,
    YEAR_10000_MILLIS,
    EventRecord,
    Rejection,
    parse_value,
)

DimensionKey = Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
DimensionValue = Annotated[str, msgspec.Meta(min_length=1, max_length=DIMENSION_VALUE_MAX)]


# The fields' types both fast paths check in C (the exact path's rules, as far as types go).
MeterApiName = Annotated[str, msgspec.Meta(min_length=1)]
CustomerId = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Millis = Annotated[int, msgspec.Meta(ge=EARLIEST_MILLIS, lt=YEAR_10000_MILLIS)]
UniqueId = Annotated[str, msgspec.Meta(max_length=UNIQUE_ID_MAX)]
Dimensions = Annotated[
    dict[DimensionKey, DimensionValue], msgspec.Meta(max_length=MAX_DIMENSIONS_PER_EVENT)
]


class WireEvent(msgspec.Struct, rename="camel"):
    """One Amberflo meter record as the fast path takes it; anything else is the exact path's.
    Unknown fields are ignored, as parse_record ignores them (they stay in the stored text)."""

    meter_api_name: MeterApiName
    customer_id: CustomerId
    meter_value: int | float | str
    meter_time_in_millis: Millis
    unique_id: UniqueId | None = None
    dimensions: Dimensions | None = None


class GraphQLEvent(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """One MeterEventInput of an `ingestMeterEvents` variable, as the fast path takes it: the
    fields WireEvent takes, none other (GraphQL refuses an unknown field), and a whole-number
    value (a fraction or a string keeps the exact path, which writes its digits as sent)."""

    meter_api_name: MeterApiName
    customer_id: CustomerId
    meter_value: int
    meter_time_in_millis: Millis
    unique_id: UniqueId | None = None
    dimensions: Dimensions | None = None


_EVENTS = msgspec.json.Decoder(list[WireEvent])
_TEXTS = msgspec.json.Decoder(list[msgspec.Raw])
# Numbers a double may not carry: 16 or more digits in a row (a dot may sit among them), or a
# number token with an exponent (1e-400 would arrive as 0, 1e22 rounded). The exponent must
# follow `:`, `,` or `[` so that hex ids ("4e3f...", in most uuids) do not send every body down
# the slow exact path. Anything else a double holds exactly enough to give back the digits
# sent. (The JSON reader of every other body, http/jsonbody.py, applies the same rule.)
LONG_NUMBER = re.compile(rb"\d[\d.]{15,}|[:,\[]\s*-?[\d.]+[eE][-+]?\d")


def _plain_body(body: bytes) -> bool:
    """A body that needs no closer look anywhere: ASCII without escapes (so no NUL and no
    surrogate), no NaN or Infinity. Checked once for the whole body, not record by record."""
    return body.isascii() and b"\\" not in body and b"NaN" not in body and b"Infinity" not in body


def _plain_record(text: bytes) -> bool:
    """Within the size, and no nesting beyond the record and its dimensions."""
    return len(text) <= MAX_RECORD_BYTES and text.count(b"{") + text.count(b"[") <= 2


def valid_batch(body: bytes, now: datetime) -> list[EventRecord] | None:
    """Every record of a JSON array body, when each is plainly valid; else None (see above)."""
    if body[:64].lstrip()[:1] != b"[" or not _plain_body(body):
        return None  # (much leading whitespace too: the exact path reads it)
    try:
        events = _EVENTS.decode(body)
        texts = _TEXTS.decode(body)
    except (msgspec.MsgspecError, RecursionError):  # nested too deep: the exact path says so
        return None
    if not events:
        return None  # an empty batch: the exact path answers it
    if any(type(e.meter_value) is float for e in events) and LONG_NUMBER.search(body):
        return None
    latest = now + MAX_FUTURE
    records: list[EventRecord] = []
    for event, raw in zip(events, texts, strict=True):
        text = bytes(raw)
        record = _plain_record(text) and _checked(event, text, latest)
        if not record:
            return None
        records.append(record)
    return records


def _checked(event: WireEvent | GraphQLEvent, text: bytes, latest: datetime) -> EventRecord | None:
    """The record, if its fields are plainly valid (see the module's docstring)."""
    value = event.meter_value
    checked: Decimal | Rejection
    if type(value) is int and -MAX_VALUE < value < MAX_VALUE:
        checked = Decimal(value)
    elif type(value) is float and value == 0.0:
        return None  # 0.0 may have been 1e-400: the digits decide
    else:
        checked = parse_value(value)
    if isinstance(checked, Rejection):
        return None
    millis = event.meter_time_in_millis
    when = EPOCH + timedelta(milliseconds=millis)
    if when > latest:
        return None
    customer_id = event.customer_id
    if not CUSTOMER_ID_RE.fullmatch(customer_id):
        return None
    return EventRecord(
        meter_api_name=event.meter_api_name,
        customer_id=customer_id,
        value=checked,
        time=when,
        time_millis=millis,
        unique_id=event.unique_id or None,  # "" is no uniqueId
        dimensions=event.dimensions or {},
        raw=text.decode("ascii"),
    )


def graphql_events(events: list[Any]) -> list[GraphQLEvent] | None:
    """An `ingestMeterEvents` variable's events (as decoded JSON) in the fast path's shape, by
    msgspec's conversion in C; None if any is not in it."""
    try:
        return msgspec.convert(events, list[GraphQLEvent])
    except msgspec.ValidationError:
        return None


def graphql_payload(
    meter_api_name: Any,
    customer_id: Any,
    value: Any,
    millis: Any,
    unique_id: Any,
    dimensions: Any,
) -> dict[str, Any]:
    """A GraphQL event as a record, the form its stored text takes: these fields, in this
    order, a null uniqueId or dimensions left out. (Both GraphQL paths write it: the exact one
    in resolvers/events.py, the fast one below.)"""
    payload: dict[str, Any] = {
        "meterApiName": meter_api_name,
        "customerId": customer_id,
        "meterValue": value,
        "meterTimeInMillis": millis,
    }
    if unique_id is not None:
        payload["uniqueId"] = unique_id
    if dimensions is not None:
        payload["dimensions"] = dimensions
    return payload


def valid_graphql_batch(events: list[GraphQLEvent], now: datetime) -> list[EventRecord] | None:
    """Every event as an `EventRecord`, when each is plainly valid; else None, and the exact
    path (graphql-core's coercion, then parse_record) decides. The stored text is the one the
    exact path writes for a whole-number value: these fields, in this order, null ones left out."""
    latest = now + MAX_FUTURE
    records: list[EventRecord] = []
    for event in events:
        if not -MAX_VALUE < event.meter_value < MAX_VALUE:
            return None  # (and orjson writes no integer past 64 bits)
        payload = graphql_payload(
            event.meter_api_name,
            event.customer_id,
            event.meter_value,
            event.meter_time_in_millis,
            event.unique_id,
            event.dimensions,
        )
        try:
            text = orjson.dumps(payload)
        except orjson.JSONEncodeError:  # a lone surrogate: the exact path names the field
            return None
        # orjson escapes control characters and writes the rest as UTF-8: ASCII without a
        # backslash holds no NUL, no surrogate, nothing for the exact path's closer look.
        record = (
            len(text) <= MAX_RECORD_BYTES
            and text.isascii()
            and b"\\" not in text
            and _checked(event, text, latest)
        )
        if not record:
            return None
        records.append(record)
    return records
