"""The compiled fast path of REST ingest (services/record_decoding.py) against the exact path
(wire.decode, then parse_record per record): whatever batch a producer sends, the fast path
either steps aside (None) or answers every record exactly as the exact path would accept it —
same fields, same value digits, same time — keeping each record's own text from the body."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meterflow.http import wire
from meterflow.services.event_records import EventRecord
from meterflow.services.ingestion import Status, _parse_all
from meterflow.services.record_decoding import LONG_NUMBER, valid_batch

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)

texts = st.one_of(
    st.sampled_from(["calls", "c-1", "acme corp", " padded ", "", "x" * 201, "tab\there"]),
    st.text(max_size=12),
)
values = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["1.5", " 2 ", "1e3", "NaN", "", "abc", "0.1234567890123"]),
    st.sampled_from([True, None, [], {}]),
)
times = st.one_of(
    st.integers(min_value=NOW_MS - 10**10, max_value=NOW_MS + 10**7),
    st.sampled_from([NOW_MS, 946_684_799_999, 253_402_300_800_000, 1.7e12, "1700000000000"]),
)
dimensions = st.one_of(
    st.none(),
    st.dictionaries(texts, st.one_of(texts, st.integers()), max_size=3),
    st.sampled_from(["eu", [], {"k": {"deep": "x"}}]),
)


@st.composite
def records(draw: Any) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, strategy in (
        ("meterApiName", texts),
        ("customerId", texts),
        ("meterValue", values),
        ("meterTimeInMillis", times),
        ("uniqueId", st.one_of(st.none(), texts)),
        ("dimensions", dimensions),
        ("extra", st.one_of(st.integers(), texts)),
    ):
        if draw(st.booleans()) or key in ("meterApiName", "customerId"):
            record[key] = draw(strategy)
    return record


plain_text = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='\\"{['),
    min_size=1,
    max_size=20,
).filter(  # what gets a closer look, by design: NaN, Infinity, what may be a long number
    lambda t: "NaN" not in t and "Infinity" not in t and not LONG_NUMBER.search(t.encode())
)


@st.composite
def plain_records(draw: Any) -> dict[str, Any]:
    """Records a producer would send: mostly what the fast path takes."""
    record: dict[str, Any] = {
        "meterApiName": draw(st.sampled_from(["calls", "gb-seconds", "tokens"])),
        "customerId": draw(plain_text),
        "meterValue": draw(
            st.one_of(
                st.integers(min_value=-(10**12), max_value=10**12),
                st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
                .map(lambda f: round(f, 3))
                .filter(lambda f: f != 0),  # a 0.0 may have been 1e-400: the exact path's
                st.decimals(places=4, min_value=-1000, max_value=1000).map(str),
            )
        ),
        "meterTimeInMillis": draw(st.integers(min_value=NOW_MS - 10**10, max_value=NOW_MS)),
    }
    if draw(st.booleans()):
        record["uniqueId"] = draw(st.one_of(plain_text, st.just("")))
    if draw(st.booleans()):
        record["dimensions"] = draw(st.dictionaries(plain_text, plain_text, max_size=3))
    return record


def exact(body: bytes) -> tuple[list[Any], list[tuple[int, EventRecord]]]:
    return _parse_all(wire.decode(body, "application/json"), NOW)


def same(fast: EventRecord, slow: EventRecord) -> bool:
    return (
        fast.meter_api_name == slow.meter_api_name
        and fast.customer_id == slow.customer_id
        and str(fast.value) == str(slow.value)  # the digits too, not only the number
        and fast.time == slow.time
        and fast.time_millis == slow.time_millis
        and fast.unique_id == slow.unique_id
        and fast.dimensions == slow.dimensions
        and fast.identity == slow.identity
        and json.loads(fast.raw) == json.loads(slow.raw)
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.one_of(plain_records(), plain_records(), records()), min_size=1, max_size=6),
    st.sampled_from([None, 0, 2]),
)
def test_the_fast_path_answers_as_the_exact_path_or_steps_aside(
    batch: list[dict[str, Any]], indent: int | None
) -> None:
    body = json.dumps(batch, indent=indent).encode()
    fast = valid_batch(body, NOW)
    outcomes, parsed = exact(body)
    event("fast path" if fast is not None else "exact path")
    if fast is None:
        return
    assert all(o.status is Status.ACCEPTED for o in outcomes), outcomes
    assert len(fast) == len(parsed) == len(batch)
    for one, (_, slow) in zip(fast, parsed, strict=True):
        assert same(one, slow), (one, slow)


@settings(max_examples=200)
@given(st.lists(plain_records(), min_size=1, max_size=20))
def test_what_producers_send_takes_the_fast_path(batch: list[dict[str, Any]]) -> None:
    body = json.dumps(batch).encode()
    fast = valid_batch(body, NOW)
    assert fast is not None
    _, parsed = exact(body)
    for one, (_, slow) in zip(fast, parsed, strict=True):
        assert same(one, slow), (one, slow)


def test_plain_batches_take_the_fast_path_with_their_own_text() -> None:
    batch = [
        {
            "meterApiName": "calls",
            "customerId": f"c{i}",
            "meterValue": v,
            "meterTimeInMillis": NOW_MS - i,
            "uniqueId": f"u{i}",
            "dimensions": {"region": "eu"},
        }
        for i, v in enumerate([1, 2.5, "3.25", 0, -4])
    ]
    body = json.dumps(batch, indent=1).encode()
    fast = valid_batch(body, NOW)
    assert fast is not None
    _, parsed = exact(body)
    assert [same(f, s) for f, (_, s) in zip(fast, parsed, strict=True)] == [True] * 5
    # The record's text as it sits in the body, whitespace and all.
    assert fast[0].raw == json.dumps(batch[0], indent=1).replace("\n", "\n ")
    assert [str(r.value) for r in fast] == ["1", "2.5", "3.25", "0", "-4"]


def test_what_needs_a_closer_look_goes_the_exact_way() -> None:
    def one(**fields: Any) -> bytes:
        record = {
            "meterApiName": "calls",
            "customerId": "c",
            "meterValue": 1,
            "meterTimeInMillis": NOW_MS,
        }
        record.update(fields)
        return json.dumps([record]).encode()

    assert valid_batch(one(), NOW) is not None
    for body in (
        one(meterValue=0.1 + 0.2),  # 17 digits: read from its text
        one(meterValue=0.0),  # 0.0 may have been 1e-400
        one(customerId="caf\u00e9"),  # not ASCII: surrogates are looked for
        one(customerId="\u0000"),  # an escape
        one(meterTimeInMillis=NOW_MS + int(timedelta(minutes=6).total_seconds() * 1000)),
        one(meterValue=10**18),  # out of bounds: rejected by the exact path
        one(uniqueId="x" * 201),
        one(dimensions={"a": ""}),
        one(extra={"deep": [1]}),
        b'[{"meterApiName":"calls","customerId":"c","meterValue":NaN,"meterTimeInMillis":1}]',
        b"[]",
        b'{"meterApiName":"calls"}',
        b"[" * 100_000 + b"]" * 100_000,
    ):
        assert valid_batch(body, NOW) is None, body[:80]
