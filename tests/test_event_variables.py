"""`ingestMeterEvents`' events coerced in one pass (schema/event_variables.py) against
graphql-core's own coercion of the same variables: for any batch, either the fast pass steps
aside, or it gives exactly what graphql-core gives — same keys, same defaults, same Decimals
with the same digits (and the same NaN text for a value that is not a number)."""

from __future__ import annotations

import decimal
import json
from datetime import UTC, datetime
from typing import Any

from graphql import get_variable_values, parse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meterflow.graphql_api import schema
from meterflow.http.jsonbody import loads
from meterflow.resolvers.events import _record
from meterflow.schema.event_variables import TYPED, pre_coerce
from meterflow.services.ingestion import Status, _parse_all
from meterflow.services.record_decoding import valid_graphql_batch

DOCUMENT = parse(
    """mutation Ingest($events: [MeterEventInput!]!, $other: [MeterEventInput!]) {
    ingestMeterEvents(events: $events) { accepted } }"""
)
SCHEMA = schema._schema

scalars = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    st.none(),
    st.sampled_from(["1.5", " 7 ", "abc", "1e400", "NaN"]),
)
fields = {
    "meterApiName": st.one_of(st.text(max_size=8), scalars),
    "customerId": st.one_of(st.text(max_size=8), scalars),
    "meterValue": scalars,
    "meterTimeInMillis": scalars,
    "uniqueId": st.one_of(st.none(), st.text(max_size=8), scalars),
    "dimensions": st.one_of(st.none(), st.dictionaries(st.text(max_size=3), scalars), scalars),
    "unknownField": scalars,
}


@st.composite
def events(draw: Any) -> Any:
    if draw(st.integers(0, 20)) == 0:
        return draw(scalars)  # not even an object
    chosen = {}
    for name, strategy in fields.items():
        required = name in ("meterApiName", "customerId", "meterValue", "meterTimeInMillis")
        if name == "unknownField":
            if draw(st.integers(0, 10)) == 0:
                chosen[name] = draw(strategy)
        elif (required and draw(st.integers(0, 15)) > 0) or (not required and draw(st.booleans())):
            chosen[name] = draw(strategy)
    return chosen


@st.composite
def plain_events(draw: Any) -> dict[str, Any]:
    chosen: dict[str, Any] = {
        "meterApiName": draw(st.text(max_size=8)),
        "customerId": draw(st.text(max_size=8)),
        "meterValue": draw(
            st.one_of(
                st.integers(),
                st.floats(allow_nan=False, allow_infinity=False),
                st.decimals(allow_nan=False, allow_infinity=False).map(str),
                st.text(max_size=5),
            )
        ),
        "meterTimeInMillis": draw(st.one_of(st.integers(), st.integers().map(str))),
    }
    if draw(st.booleans()):
        chosen["uniqueId"] = draw(st.one_of(st.none(), st.text(max_size=8)))
    if draw(st.booleans()):
        chosen["dimensions"] = draw(
            st.one_of(st.none(), st.dictionaries(st.text(max_size=3), st.text(max_size=3)))
        )
    return chosen


def same(a: Any, b: Any) -> bool:
    """Equal, and Decimals with the same digits (1.50 is not 1.5 here)."""
    if isinstance(a, decimal.Decimal) or isinstance(b, decimal.Decimal):
        return (
            type(a) is type(b)
            and str(a) == str(b)
            and getattr(a, "text", 0) == getattr(b, "text", 0)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(plain_events(), plain_events(), events()), max_size=5))
def test_plain_events_are_coerced_as_graphql_core_does(batch: list[Any]) -> None:
    # Through the same JSON reader as a request body (fractions keep their digits).
    raw = loads(json.dumps({"events": batch}))
    replaced, fast = pre_coerce(SCHEMA, DOCUMENT, None, raw)
    operation = DOCUMENT.definitions[0]
    reference = get_variable_values(SCHEMA, operation.variable_definitions, raw)  # type: ignore[attr-defined]
    event("fast" if fast else "graphql-core")
    if not fast:
        assert replaced == raw
        return
    assert not isinstance(reference, list), reference  # graphql-core accepted it too
    assert replaced == {"events": []}
    typed = fast.get(TYPED + "events")
    # msgspec's typed events are handed on with graphql-core's coercion of them, for the exact
    # path; that coercion, too, must be graphql-core's own.
    coerced = typed.coerce() if typed is not None else fast["events"]
    assert same(coerced, reference.coerced["events"])


NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
ascii_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=10
)


@st.composite
def typical_events(draw: Any) -> dict[str, Any]:
    """What a producer sends: the typed fast path's shape, with values inside and outside its
    checks (a time too far ahead, a value past the limit, a lone surrogate, a bad customer id);
    the other strategies bring everything else."""
    chosen: dict[str, Any] = {
        "meterApiName": draw(st.sampled_from(["calls", "tokens"])),
        "customerId": draw(ascii_text | ascii_text | st.text(min_size=1, max_size=4)),
        "meterValue": draw(st.integers(-(10**12), 10**12) | st.integers(-(10**19), 10**19)),
        "meterTimeInMillis": draw(st.integers(NOW_MS - 10**10, NOW_MS + 10**6) | st.just(NOW_MS)),
    }
    if draw(st.booleans()):
        chosen["uniqueId"] = draw(st.one_of(st.none(), ascii_text, st.just("\ud800x")))
    if draw(st.booleans()):
        chosen["dimensions"] = draw(
            st.one_of(st.none(), st.dictionaries(ascii_text, ascii_text, max_size=3))
        )
    return chosen


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.one_of(
        st.lists(typical_events(), min_size=1, max_size=4),
        st.lists(st.one_of(typical_events(), events()), min_size=1, max_size=4),
    )
)
def test_typed_events_become_the_records_the_exact_path_makes(batch: list[Any]) -> None:
    raw = loads(json.dumps({"events": batch}))
    _, fast = pre_coerce(SCHEMA, DOCUMENT, None, raw)
    typed = fast.get(TYPED + "events")
    if typed is None:
        event("graphql-core")
        return
    records = valid_graphql_batch(typed.events, NOW)
    coerced = typed.coerce()
    assert coerced is not None  # msgspec's shape is always one the one-pass coercion takes
    outcomes, parsed = _parse_all([_record(e, "meterflow-value-test") for e in coerced], NOW)
    event("typed, fast" if records is not None else "typed, exact")
    if records is None:
        return
    assert all(o.status is Status.ACCEPTED for o in outcomes), outcomes
    assert len(records) == len(parsed) == len(batch)
    for fast_one, (_, slow) in zip(records, parsed, strict=True):
        assert fast_one == slow  # every field, the value's digits and the stored text included
        assert str(fast_one.value) == str(slow.value)


def test_a_typical_batch_takes_the_fast_pass() -> None:
    raw = loads(
        json.dumps(
            {
                "events": [
                    {
                        "meterApiName": "calls",
                        "customerId": "c1",
                        "meterValue": 1.5,
                        "meterTimeInMillis": 1_764_000_000_000,
                        "uniqueId": "u1",
                    },
                    {
                        "meterApiName": "calls",
                        "customerId": "c2",
                        "meterValue": "2.50",
                        "meterTimeInMillis": "1764000000001",
                        "dimensions": {"region": "eu"},
                    },
                ]
            }
        )
    )
    _, fast = pre_coerce(SCHEMA, DOCUMENT, "Ingest", raw)
    assert fast["events"][0]["meterValue"] == decimal.Decimal("1.5")
    assert str(fast["events"][1]["meterValue"]) == "2.50"
    assert fast["events"][0]["dimensions"] is None  # the declared default, as graphql-core
    assert fast["events"][1]["uniqueId"] is None
