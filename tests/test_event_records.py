"""The pure record checks and wire decoding, including properties over random input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from meterflow.http import wire
from meterflow.services.event_records import (
    EventRecord,
    RejectCode,
    Rejection,
    parse_record,
    parse_value,
)

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


def record(**overrides: object) -> dict[str, object]:
    base: dict[str, object] = {
        "meterApiName": "m",
        "customerId": "c",
        "meterValue": 1,
        "meterTimeInMillis": NOW_MS,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def parse(**overrides: object) -> EventRecord | Rejection:
    data = record(**overrides)
    return parse_record(data, json.dumps(data, default=str), NOW)


def code(**overrides: object) -> RejectCode | None:
    result = parse(**overrides)
    return result.code if isinstance(result, Rejection) else None


def test_each_field_has_its_own_rejection_code() -> None:
    assert code() is None
    assert code(meterApiName=None) is RejectCode.MISSING_FIELD
    assert code(customerId=None) is RejectCode.MISSING_FIELD
    assert code(customerId=7) is RejectCode.MALFORMED_RECORD
    assert code(customerId="x" * 201) is RejectCode.INVALID_CUSTOMER_ID
    assert code(meterValue=None) is RejectCode.MISSING_FIELD
    assert code(meterValue="ten") is RejectCode.INVALID_VALUE
    assert code(meterValue=True) is RejectCode.INVALID_VALUE
    assert code(meterValue=Decimal("NaN")) is RejectCode.NON_FINITE_VALUE
    assert code(meterValue=Decimal("-Infinity")) is RejectCode.NON_FINITE_VALUE
    assert code(meterValue=float("inf")) is RejectCode.NON_FINITE_VALUE
    assert code(meterValue=Decimal("1" * 39)) is RejectCode.INVALID_VALUE
    assert code(meterTimeInMillis=None) is RejectCode.MISSING_FIELD
    assert code(meterTimeInMillis=NOW_MS + 0.5) is RejectCode.INVALID_TIME
    assert code(meterTimeInMillis=NOW_MS + 5 * 60_000) is None  # exactly 5 minutes is fine
    assert code(meterTimeInMillis=NOW_MS + 5 * 60_000 + 1) is RejectCode.FUTURE_TIME
    assert code(uniqueId=5) is RejectCode.INVALID_UNIQUE_ID
    assert code(uniqueId="u" * 201) is RejectCode.INVALID_UNIQUE_ID
    assert code(dimensions=["a"]) is RejectCode.INVALID_DIMENSIONS
    assert parse_record("not an object", "x", NOW).code is RejectCode.MALFORMED_RECORD  # type: ignore[union-attr]
    assert code(padding="x" * 20_000) is RejectCode.RECORD_TOO_LARGE


def test_seconds_instead_of_milliseconds_get_a_hint() -> None:
    result = parse(meterTimeInMillis=NOW_MS // 1000)
    assert isinstance(result, Rejection)
    assert "looks like seconds" in result.message


def test_numbers_arrive_exactly() -> None:
    for given_value, stored in [
        (1, "1"),
        (0.1, "0.1"),
        (2.0, "2"),
        ("3.25", "3.25"),
        (Decimal("1E-12"), "1E-12"),
        (-4, "-4"),
    ]:
        result = parse(meterValue=given_value)
        assert isinstance(result, EventRecord)
        assert str(result.value) == stored


def test_time_is_utc_milliseconds() -> None:
    result = parse(meterTimeInMillis=NOW_MS - 1)
    assert isinstance(result, EventRecord)
    assert result.time == NOW - timedelta(milliseconds=1)
    assert result.time.tzinfo is UTC


def test_identity_prefers_unique_id_else_hashes_the_record() -> None:
    a = parse(uniqueId="abc", meterValue=1)
    b = parse(uniqueId="abc", meterValue=2)
    assert isinstance(a, EventRecord) and isinstance(b, EventRecord)
    assert a.identity == b.identity == "u:abc"
    one = parse(meterValue=1, dimensions={"a": "1", "b": "2"})
    same = parse(meterValue=Decimal("1.000"), dimensions={"b": "2", "a": "1"})
    other = parse(meterValue=1, dimensions={"a": "1", "b": "3"})
    assert isinstance(one, EventRecord) and isinstance(same, EventRecord)
    assert isinstance(other, EventRecord)
    assert one.identity == same.identity
    assert one.identity != other.identity
    assert one.identity.startswith("h:")


records = st.lists(
    st.fixed_dictionaries(
        {
            "meterApiName": st.text(min_size=1, max_size=10),
            "customerId": st.text(min_size=1, max_size=10),
            "meterValue": st.decimals(
                allow_nan=False, allow_infinity=False, places=6, min_value=-(10**9), max_value=10**9
            ),
            "meterTimeInMillis": st.integers(min_value=0, max_value=2**45),
        }
    ),
    max_size=20,
)


@given(records, st.sampled_from(["", " ", "\n  ", "\t"]))
def test_json_array_decoding_keeps_every_record_and_its_text(
    items: list[dict[str, object]], gap: str
) -> None:
    body = "[" + gap + ("," + gap).join(json.dumps(i, default=str) for i in items) + gap + "]"
    decoded = wire.decode(body.encode(), "application/json")
    assert [r.data for r in decoded] == [{**i, "meterValue": str(i["meterValue"])} for i in items]
    for item, raw in zip(items, decoded, strict=True):
        assert json.loads(raw.raw) == json.loads(json.dumps(item, default=str))


@given(
    st.decimals(
        allow_nan=False, allow_infinity=False, places=9, min_value=-(10**15), max_value=10**15
    )
)
def test_json_numbers_decode_as_exact_decimals(value: Decimal) -> None:
    text = format(value, "f")  # always has a fraction: JSON's float syntax
    (decoded,) = wire.decode(f'{{"meterValue": {text}}}'.encode(), None)
    # Whichever decoder took it (orjson for short numbers, Decimal for long ones), the value
    # that will be stored is the decimal that was sent.
    assert parse_value(decoded.data["meterValue"]) == value


def test_exponent_and_special_numbers() -> None:
    (decoded,) = wire.decode(b'{"meterValue": 1.5e3, "x": NaN}', None)
    assert decoded.data["meterValue"] == Decimal("1.5E+3")
    assert decoded.data["x"].is_nan()
