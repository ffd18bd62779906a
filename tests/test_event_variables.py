"""`ingestMeterEvents`' events coerced in one pass (schema/event_variables.py) against
graphql-core's own coercion of the same variables: for any batch, either the fast pass steps
aside, or it gives exactly what graphql-core gives — same keys, same defaults, same Decimals
with the same digits (and the same NaN text for a value that is not a number)."""

from __future__ import annotations

import decimal
import json
from typing import Any

from graphql import get_variable_values, parse
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from meterflow.graphql_api import schema
from meterflow.http.jsonbody import loads
from meterflow.schema.event_variables import pre_coerce

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
    assert same(fast["events"], reference.coerced["events"])


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
