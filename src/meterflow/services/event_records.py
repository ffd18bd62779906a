"""One meter event record, as a producer sent it, checked and normalised (pure, no I/O).

Each failure is a `Rejection` with a stable code, so one bad record never fails its batch.
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from meterflow.models.meter_event import UNIQUE_ID_MAX
from meterflow.services.customers import CUSTOMER_ID_RE

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MAX_FUTURE = timedelta(minutes=5)
EARLIEST_MILLIS = 946_684_800_000  # 2000-01-01: anything earlier is a unit mistake, not usage
SECONDS_NOT_MILLIS = 10_000_000_000  # epoch *seconds* for any date until 2286 are below this
DIMENSION_VALUE_MAX = 200
MAX_DIMENSIONS_PER_EVENT = 30
MAX_RECORD_BYTES = 16_384
MAX_VALUE_DIGITS = 38


class RejectCode(enum.StrEnum):
    MALFORMED_RECORD = "MALFORMED_RECORD"
    MISSING_FIELD = "MISSING_FIELD"
    INVALID_CUSTOMER_ID = "INVALID_CUSTOMER_ID"
    INVALID_VALUE = "INVALID_VALUE"
    NON_FINITE_VALUE = "NON_FINITE_VALUE"
    INVALID_TIME = "INVALID_TIME"
    FUTURE_TIME = "FUTURE_TIME"
    INVALID_UNIQUE_ID = "INVALID_UNIQUE_ID"
    INVALID_DIMENSIONS = "INVALID_DIMENSIONS"
    UNKNOWN_DIMENSION = "UNKNOWN_DIMENSION"
    MISSING_DIMENSION = "MISSING_DIMENSION"
    RECORD_TOO_LARGE = "RECORD_TOO_LARGE"
    UNKNOWN_METER = "UNKNOWN_METER"
    DEPRECATED_METER = "DEPRECATED_METER"
    UNKNOWN_CUSTOMER = "UNKNOWN_CUSTOMER"


@dataclass(frozen=True, slots=True)
class Rejection:
    code: RejectCode
    message: str


@dataclass(frozen=True, slots=True)
class EventRecord:
    meter_api_name: str
    customer_id: str
    value: Decimal
    time: datetime
    time_millis: int
    unique_id: str | None
    dimensions: dict[str, str]
    raw: str  # the record's JSON text as ingested

    @property
    def identity(self) -> str:
        """Dedup identity within (account, meter): the uniqueId, else a hash of the record."""
        if self.unique_id is not None:
            return "u:" + self.unique_id
        dims = "\x1e".join(f"{k}\x1d{v}" for k, v in sorted(self.dimensions.items()))
        canonical = "\x1f".join(
            (
                self.meter_api_name,
                self.customer_id,
                _canonical(self.value),
                str(self.time_millis),
                dims,
            )
        )
        return "h:" + hashlib.sha256(canonical.encode()).hexdigest()


def _canonical(value: Decimal) -> str:
    # 1, 1.0 and 1E+0 are the same usage: the same record for full-record dedup.
    return format(value.normalize(), "f") if value else "0"


def _text(record: dict[str, Any], key: str) -> str | Rejection:
    value = record.get(key)
    if value is None or value == "":
        return Rejection(RejectCode.MISSING_FIELD, f"{key} is required")
    if not isinstance(value, str):
        return Rejection(
            RejectCode.MALFORMED_RECORD, f"{key} must be a string, got {type(value).__name__}"
        )
    return value


def parse_value(raw: Any) -> Decimal | Rejection:
    if type(raw) is int and -(10**38) < raw < 10**38:  # the common case: a count
        return Decimal(raw)
    if raw is None or raw == "":
        return Rejection(RejectCode.MISSING_FIELD, "meterValue is required")
    if isinstance(raw, bool):
        return Rejection(RejectCode.INVALID_VALUE, "meterValue must be a number, got a boolean")
    try:
        if isinstance(raw, Decimal):
            value = raw
        elif isinstance(raw, int):
            value = Decimal(raw)
        elif isinstance(raw, float):
            # The shortest text that round-trips (0.1 stays 0.1); GraphQL's Float turns 1 into
            # 1.0, so integral floats are stored as the integers they were sent as.
            value = Decimal(int(raw)) if raw.is_integer() else Decimal(repr(raw))
        elif isinstance(raw, str):
            value = Decimal(raw.strip())
        else:
            return Rejection(
                RejectCode.INVALID_VALUE, f"meterValue must be a number, got {type(raw).__name__}"
            )
    except (InvalidOperation, ValueError):
        return Rejection(RejectCode.INVALID_VALUE, f"meterValue {str(raw)[:50]!r} is not a number")
    if not value.is_finite():
        return Rejection(RejectCode.NON_FINITE_VALUE, f"meterValue must be finite, got {value}")
    if len(value.as_tuple().digits) > MAX_VALUE_DIGITS:
        return Rejection(
            RejectCode.INVALID_VALUE,
            f"meterValue has more than {MAX_VALUE_DIGITS} significant digits",
        )
    return value


def parse_time(raw: Any, now: datetime) -> tuple[datetime, int] | Rejection:
    if type(raw) is int and raw >= EARLIEST_MILLIS:  # the common case, without Decimal
        when = EPOCH + timedelta(milliseconds=raw)
        if when <= now + MAX_FUTURE:
            return when, raw
    if raw is None or raw == "":
        return Rejection(RejectCode.MISSING_FIELD, "meterTimeInMillis is required")
    if isinstance(raw, bool):
        return Rejection(RejectCode.INVALID_TIME, "meterTimeInMillis must be epoch milliseconds")
    try:
        number = Decimal(raw.strip()) if isinstance(raw, str) else Decimal(raw)
    except (InvalidOperation, ValueError, TypeError):
        return Rejection(
            RejectCode.INVALID_TIME, f"meterTimeInMillis {str(raw)[:50]!r} is not a number"
        )
    if not number.is_finite() or number != number.to_integral_value():
        return Rejection(
            RejectCode.INVALID_TIME,
            f"meterTimeInMillis must be a whole number of milliseconds, got {raw}",
        )
    millis = int(number)
    if millis < EARLIEST_MILLIS:
        hint = " (it looks like seconds, not milliseconds)" if millis > 946_684_800 else ""
        return Rejection(
            RejectCode.INVALID_TIME, f"meterTimeInMillis {millis} is before the year 2000{hint}"
        )
    when = EPOCH + timedelta(milliseconds=millis)
    if when > now + MAX_FUTURE:
        return Rejection(
            RejectCode.FUTURE_TIME,
            f"meterTimeInMillis {millis} ({when.isoformat()}) is more than 5 minutes in the future",
        )
    return when, millis


def parse_dimensions(raw: Any) -> dict[str, str] | Rejection:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        return Rejection(
            RejectCode.INVALID_DIMENSIONS, "dimensions must be an object of string values"
        )
    if len(raw) > MAX_DIMENSIONS_PER_EVENT:
        return Rejection(
            RejectCode.INVALID_DIMENSIONS,
            f"an event carries at most {MAX_DIMENSIONS_PER_EVENT} dimensions",
        )
    for key, value in raw.items():
        if not isinstance(value, str):
            return Rejection(
                RejectCode.INVALID_DIMENSIONS,
                f"dimension {key!r} must be a string, got {type(value).__name__}",
            )
        if not 1 <= len(value) <= DIMENSION_VALUE_MAX:
            return Rejection(
                RejectCode.INVALID_DIMENSIONS,
                f"dimension {key!r} must be 1-{DIMENSION_VALUE_MAX} characters, got {len(value)}",
            )
        if not key or len(key) > 100:
            return Rejection(RejectCode.INVALID_DIMENSIONS, "dimension keys are 1-100 characters")
    return raw


def parse_record(record: Any, raw: str, now: datetime) -> EventRecord | Rejection:
    """Check one record's own fields (the meter's rules come later, in `check_against_meter`)."""
    if not isinstance(record, dict):
        return Rejection(
            RejectCode.MALFORMED_RECORD, f"a record must be an object, got {type(record).__name__}"
        )
    if len(raw) > MAX_RECORD_BYTES:
        return Rejection(
            RejectCode.RECORD_TOO_LARGE,
            f"the record is {len(raw)} bytes; the limit is {MAX_RECORD_BYTES}",
        )
    meter_api_name = _text(record, "meterApiName")
    if isinstance(meter_api_name, Rejection):
        return meter_api_name
    customer_id = _text(record, "customerId")
    if isinstance(customer_id, Rejection):
        return customer_id
    if len(customer_id) > 200 or not CUSTOMER_ID_RE.fullmatch(customer_id):
        return Rejection(
            RejectCode.INVALID_CUSTOMER_ID,
            "customerId must be 1-200 printable characters without control "
            "characters or surrounding spaces",
        )
    value = parse_value(record.get("meterValue"))
    if isinstance(value, Rejection):
        return value
    time = parse_time(record.get("meterTimeInMillis"), now)
    if isinstance(time, Rejection):
        return time
    unique_id = record.get("uniqueId")
    if unique_id == "":
        unique_id = None
    if unique_id is not None and (not isinstance(unique_id, str) or len(unique_id) > UNIQUE_ID_MAX):
        return Rejection(
            RejectCode.INVALID_UNIQUE_ID,
            f"uniqueId must be a string of at most {UNIQUE_ID_MAX} characters",
        )
    dimensions = parse_dimensions(record.get("dimensions"))
    if isinstance(dimensions, Rejection):
        return dimensions
    return EventRecord(
        meter_api_name=meter_api_name,
        customer_id=customer_id,
        value=value,
        time=time[0],
        time_millis=time[1],
        unique_id=unique_id,
        dimensions=dimensions,
        raw=raw,
    )
