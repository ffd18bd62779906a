"""meterEvents(newestFirst: true) over HTTP: the By Event view's live tail starts from the
latest events and pages back to older ones."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tests.client import GraphQLClient
from tests.helpers import create_meter, ingest

PAGE = """query($after: String, $newest: Boolean!, $f: MeterEventFilter) {
  meterEvents(first: 2, after: $after, newestFirst: $newest, filter: $f) {
    edges { cursor node { id meterValue } } pageInfo { hasNextPage endCursor } } }"""


async def pages(gql: GraphQLClient, newest: bool, **filter: str) -> list[list[str]]:
    seen: list[list[str]] = []
    after = None
    while True:
        page = (await gql(PAGE, {"after": after, "newest": newest, "f": filter or None}))[
            "meterEvents"
        ]
        seen.append([edge["node"]["meterValue"] for edge in page["edges"]])
        if not page["pageInfo"]["hasNextPage"]:
            return seen
        after = page["pageInfo"]["endCursor"]


async def test_newest_first_pages_back_through_every_event(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")
    millis = int(datetime.now(UTC).timestamp() * 1000)
    for value in range(1, 6):  # five batches: five ingestion positions
        await ingest(
            gql,
            [
                {
                    "meterApiName": "calls",
                    "customerId": "c" if value != 3 else "other",
                    "meterValue": value,
                    "meterTimeInMillis": millis,
                    "uniqueId": str(uuid.uuid4()),
                }
            ],
        )
    assert await pages(gql, newest=False) == [["1", "2"], ["3", "4"], ["5"]]
    assert await pages(gql, newest=True) == [["5", "4"], ["3", "2"], ["1"]]
    assert await pages(gql, newest=True, customerId="c") == [["5", "4"], ["2", "1"]]
