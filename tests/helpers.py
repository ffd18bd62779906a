"""Small builders shared by the tests: meters, events, and reading them back."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from tests.client import GraphQLClient

NOW_MS = int(time.time() * 1000)


async def until(check: Any, within: float = 20) -> Any:
    """Poll an async check until it answers something truthy (and return that)."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.1)


INGEST = """
mutation($events: [MeterEventInput!]!) {
  ingestMeterEvents(events: $events) {
    accepted duplicates rejected
    outcomes { index uniqueId status code message }
  }
}"""

EVENTS = """
query($filter: MeterEventFilter, $first: Int, $after: String) {
  meterEvents(filter: $filter, first: $first, after: $after) {
    edges { node { id meterApiName customerId meterValue eventTime meterTimeInMillis uniqueId
                   dimensions payload ingestedAt cancelledAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def create_meter(
    gql: GraphQLClient, name: str, meter_type: str = "SUM", *, activate: bool = True, **fields: Any
) -> None:
    created = await gql(
        """mutation($input: CreateMeterInput!) { createMeter(input: $input) {
             __typename ... on Error { message } } }""",
        {"input": {"meterApiName": name, "meterType": meter_type, **fields}},
    )
    assert created["createMeter"]["__typename"] == "Meter", created
    if activate:
        await gql(
            "mutation($n: String!) { activateMeter(meterApiName: $n) { __typename } }", {"n": name}
        )


def event(
    meter: str = "calls",
    customer: str = "c1",
    value: float = 1,
    *,
    at: int | None = None,
    unique_id: str | None = "auto",
    **dims: str,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "meterApiName": meter,
        "customerId": customer,
        "meterValue": value,
        "meterTimeInMillis": at if at is not None else NOW_MS - 60_000,
    }
    if unique_id == "auto":
        record["uniqueId"] = str(uuid.uuid4())
    elif unique_id is not None:
        record["uniqueId"] = unique_id
    if dims:
        record["dimensions"] = dims
    return record


async def ingest(gql: GraphQLClient, events: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return (await gql(INGEST, {"events": events}, **kw))["ingestMeterEvents"]  # type: ignore[no-any-return]


async def all_events(gql: GraphQLClient, **filter: Any) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = []
    after = None
    while True:
        page = (await gql(EVENTS, {"filter": filter or None, "first": 500, "after": after}))[
            "meterEvents"
        ]
        nodes += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        after = page["pageInfo"]["endCursor"]
