"""The pure record checks and wire decoding, including properties over random input."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meterflow.http import wire
from meterflow.services.event_records import (
    EARLIEST_MILLIS,
    YEAR_10000_MILLIS,
    EventRecord,
    RejectCode,
    Rejection,
    parse_record,
    parse_time,
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
    # 30 significant digits are a valid value: no digit may be rounded away from the identity.
    a = parse(meterValue=Decimal("123456789012345678.123456789012"))
    b = parse(meterValue=Decimal("123456789012345678.123456789013"))
    assert isinstance(a, EventRecord) and isinstance(b, EventRecord)
    assert a.identity != b.identity


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


def rejection(result: object) -> Rejection:
    assert isinstance(result, Rejection), result
    return result


def test_value_boundaries() -> None:
    assert parse_value(10**18 - 1) == 10**18 - 1
    assert parse_value(-(10**18) + 1) == -(10**18) + 1
    assert parse_value(Decimal("999999999999999999.999999999999")) == Decimal(
        "999999999999999999.999999999999"
    )
    for too_big in (10**18, -(10**18), 1e18, "1e18", Decimal("1E+400"), "1E+131071", 10**5000):
        assert "less than 10^18" in rejection(parse_value(too_big)).message, too_big
        assert rejection(parse_value(too_big)).code is RejectCode.INVALID_VALUE
    assert parse_value(Decimal("0.000000000001")) == Decimal("1E-12")
    assert parse_value("1.5000000000000") == Decimal("1.5")  # trailing zeros lose nothing
    for too_fine in ("0.0000000000001", Decimal("1E-400"), "-1e-400", 1e-13, "1E-999999999"):
        result = rejection(parse_value(too_fine))
        assert result.code is RejectCode.INVALID_VALUE, too_fine
        assert "more than 12 digits after the decimal point" in result.message
    # NaN and infinities keep their own code, whatever the spelling.
    for non_finite in (Decimal("NaN"), "Infinity", float("-inf"), "sNaN"):
        assert rejection(parse_value(non_finite)).code is RejectCode.NON_FINITE_VALUE
    assert parse_value(Decimal("0E+500")) == 0
    assert parse_value(Decimal("-0E-400")) == 0


def test_huge_exponents_are_judged_without_arithmetic() -> None:
    # Expanding any of these to an integer would take the process's memory or time.
    for huge in ("1E+999999999999999999", "-1E+999999999999999999", "1E-999999999999999999"):
        assert rejection(parse_value(huge)).code is RejectCode.INVALID_VALUE
        assert rejection(parse_time(huge, NOW)).code is RejectCode.INVALID_TIME


def test_time_boundaries() -> None:
    start_of_2000 = int(datetime(2000, 1, 1, tzinfo=UTC).timestamp() * 1000)
    assert parse_time(start_of_2000, NOW) == (datetime(2000, 1, 1, tzinfo=UTC), start_of_2000)
    assert parse_time(Decimal(start_of_2000), NOW) == (
        datetime(2000, 1, 1, tzinfo=UTC),
        start_of_2000,
    )
    for before in (start_of_2000 - 1, Decimal(start_of_2000 - 1), -1, -(10**400)):
        result = rejection(parse_time(before, NOW))
        assert result.code is RejectCode.INVALID_TIME, before
        assert "before the year 2000" in result.message
    # The last millisecond of year 9999 is a time, just far in the future.
    last = int(datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp() * 1000)
    assert rejection(parse_time(last, NOW)).code is RejectCode.FUTURE_TIME
    assert "9999-12-31T23:59:59.999000" in rejection(parse_time(last, NOW)).message
    for unrepresentable in (last + 1, 3e14, "3e14", Decimal("1E+400"), "1E+131071", 10**5000):
        result = rejection(parse_time(unrepresentable, NOW))
        assert result.code is RejectCode.INVALID_TIME, unrepresentable
        assert "after the year 9999" in result.message
    for not_a_time in (float("inf"), float("nan"), "1E-131071", NOW_MS + 0.5, "Infinity"):
        assert rejection(parse_time(not_a_time, NOW)).code is RejectCode.INVALID_TIME


def test_unstorable_text_is_rejected_with_the_fields_code() -> None:
    for bad in ("a\x00b", "\ud800", "x\udfff", "\udbff\udc00"):  # two lone halves are no pair
        assert code(uniqueId=bad) is RejectCode.INVALID_UNIQUE_ID
        assert code(customerId="c" + bad) is RejectCode.INVALID_CUSTOMER_ID
        assert code(meterApiName="m" + bad) is RejectCode.MALFORMED_RECORD
        assert code(dimensions={"k": bad}) is RejectCode.INVALID_DIMENSIONS
        assert code(dimensions={bad: "v"}) is RejectCode.INVALID_DIMENSIONS
        if bad != "\udbff\udc00":  # in JSON text, those two escapes are one character
            assert code(note=bad) is RejectCode.MALFORMED_RECORD
            assert code(note={"nested": [bad]}) is RejectCode.MALFORMED_RECORD
    # Escapes in the stored text: paired surrogates and an escaped backslash are fine.
    assert code(note="\U0001f600", uniqueId="caf\u00e9") is None
    data = record(note="x")
    for text, expected in [
        (r'"\ud83d\ude00"', None),
        (r'"\\u0000"', None),
        (r'"\\\ud800"', RejectCode.MALFORMED_RECORD),
        (r'"\u0000"', RejectCode.MALFORMED_RECORD),
        (r'"\ud83d"', RejectCode.MALFORMED_RECORD),
        (r'"\ud83d\n"', RejectCode.MALFORMED_RECORD),
        (r'"\ude00\ud83d"', RejectCode.MALFORMED_RECORD),
        ("NaN", RejectCode.MALFORMED_RECORD),
        ("-Infinity", RejectCode.MALFORMED_RECORD),
        ('"NaN and Infinity in a string"', None),
    ]:
        raw = json.dumps(data)[:-1] + f', "other": {text}}}'
        result = parse_record(data, raw, NOW)
        assert (result.code if isinstance(result, Rejection) else None) is expected, text


def test_tiny_doubles_are_read_as_written() -> None:
    (decoded,) = wire.decode(b'[{"meterValue": 1e-400, "meterTimeInMillis": 1}]', None)
    assert decoded.data["meterValue"] == Decimal("1E-400")
    (zero,) = wire.decode(b'[{"meterValue": 0.0, "uniqueId": "e-999"}]', None)
    assert zero.data["meterValue"] == 0


def test_text_depth_ignores_brackets_in_strings() -> None:
    wire.check_text_depth('[{"a": "[[[[[[[[[[{{{{{{\\"[[["}]', 2)
    with pytest.raises(wire.TooDeep):
        wire.check_text_depth('[{"a": [1]}]', 2)
    with pytest.raises(wire.TooDeep):
        wire.check_text_depth("[" * 100_000 + "]" * 100_000, 64)


def test_depth_is_measured_without_recursion() -> None:
    deep: list[object] = []
    for _ in range(100_000):
        deep = [deep]
    assert wire.deeper_than(deep, 64)
    assert not wire.deeper_than([[{"a": [1, {"b": "c"}]}]], 5)
    assert wire.deeper_than([[{"a": [1, {"b": "c"}]}]], 4)


def unstorable(text: str) -> bool:
    return "\x00" in text or any(0xD800 <= ord(c) <= 0xDFFF for c in text)


def walk_strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [*walk_strings(k), *walk_strings(v)]]
    if isinstance(value, list):
        return [s for item in value for s in walk_strings(item)]
    return []


hostile_text = st.text(
    alphabet=st.characters() | st.characters() | st.sampled_from(["\x00", "\ud800", "\udc00"]),
    max_size=12,
)
numbers = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.integers(min_value=EARLIEST_MILLIS - 10, max_value=YEAR_10000_MILLIS + 10),
    st.sampled_from([NOW_MS, EARLIEST_MILLIS, YEAR_10000_MILLIS - 1, 10**18, -(10**18)]),
    st.floats(),
    st.decimals(),
    st.builds(
        lambda digits, exponent: Decimal(f"{digits}E{exponent}"),
        st.integers(min_value=-(10**40), max_value=10**40),
        st.integers(min_value=-(10**6), max_value=10**6),
    ),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, hostile_text)
json_like = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(hostile_text, children, max_size=3)
    ),
    max_leaves=8,
)


def sometimes(valid: st.SearchStrategy[object], hostile: st.SearchStrategy[object]):  # type: ignore[no-untyped-def]
    # A valid field three times in four (one_of would merge repeated branches).
    return st.integers(0, 3).flatmap(lambda n: hostile if n == 0 else valid)


hostile_records = st.fixed_dictionaries(
    {
        "meterApiName": sometimes(st.just("m"), st.one_of(hostile_text, json_like)),
        "customerId": sometimes(st.just("c"), st.one_of(hostile_text, json_like)),
        "meterValue": sometimes(
            st.decimals(places=3, min_value=-(10**6), max_value=10**6),
            st.one_of(numbers, st.text(max_size=30), numbers.map(str), json_like),
        ),
        "meterTimeInMillis": sometimes(
            st.integers(min_value=EARLIEST_MILLIS, max_value=NOW_MS),
            st.one_of(numbers, numbers.map(str), json_like),
        ),
    },
    optional={
        "uniqueId": sometimes(st.just("u"), st.one_of(hostile_text, json_like)),
        "dimensions": sometimes(
            st.just({"k": "v"}),
            st.one_of(st.dictionaries(hostile_text, hostile_text, max_size=4), json_like),
        ),
        "note": sometimes(st.just("n"), json_like),
    },
)


@given(hostile_records)
def test_accepted_records_keep_every_rule(data: dict[str, object]) -> None:
    raw = json.dumps(data, default=str)  # what a producer (Python's json) would send
    result = parse_record(data, raw, NOW)  # never raises
    if isinstance(result, Rejection):
        assert result.message
        result.message.encode()  # a report can quote it
        return
    assert result.value.is_finite()
    assert abs(result.value) < 10**18
    assert result.value == result.value.quantize(Decimal("1E-12"), context=Context(prec=60))
    assert datetime(2000, 1, 1, tzinfo=UTC) <= result.time <= NOW + timedelta(minutes=5)
    texts = [
        result.meter_api_name,
        result.customer_id,
        result.unique_id or "",
        *result.dimensions,
        *result.dimensions.values(),
    ]
    assert not any(unstorable(text) for text in texts), texts
    assert not unstorable(result.raw)
    # What PostgreSQL's json takes: no NaN or Infinity, nothing unstorable once decoded.
    stored = json.loads(result.raw, parse_constant=lambda word: pytest.fail(word))
    assert not any(unstorable(s) for s in walk_strings(stored))
    assert result.identity


def depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


@given(json_like, st.integers(min_value=1, max_value=6))
def test_depth_agrees_with_a_recursive_count(value: object, limit: int) -> None:
    assert wire.deeper_than(value, limit) == (depth(value) > limit)
