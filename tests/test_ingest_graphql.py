"""ingestMeterEvents: exactly once, per-event outcomes, validation codes, By Event view."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.client import GraphQLClient
from tests.helpers import NOW_MS, all_events, create_meter, event, ingest


async def test_accepts_and_lists_in_ingestion_order(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls", dimensions=["region"])
    batch = [event(value=v, region="eu") for v in (1, 2.5, 0.1)]
    result = await ingest(gql, batch)
    assert (result["accepted"], result["duplicates"], result["rejected"]) == (3, 0, 0)
    assert [o["status"] for o in result["outcomes"]] == ["ACCEPTED"] * 3
    assert [o["uniqueId"] for o in result["outcomes"]] == [e["uniqueId"] for e in batch]

    stored = await all_events(gql)
    assert [e["uniqueId"] for e in stored] == [e["uniqueId"] for e in batch]
    assert [e["meterValue"] for e in stored] == ["1", "2.5", "0.1"]  # exact decimals
    first = stored[0]
    assert first["meterApiName"] == "calls"
    assert first["customerId"] == "c1"
    assert first["dimensions"] == {"region": "eu"}
    assert first["meterTimeInMillis"] == batch[0]["meterTimeInMillis"]
    assert first["payload"]["uniqueId"] == batch[0]["uniqueId"]
    assert first["ingestedAt"] is not None and first["cancelledAt"] is None


async def test_duplicates_in_one_batch_across_batches_and_without_unique_id(
    gql: GraphQLClient,
) -> None:
    await create_meter(gql, "calls")
    a, b = event(unique_id="a"), event(unique_id="b")
    result = await ingest(gql, [a, b, a, {**a, "meterValue": 99}])
    # The same uniqueId is the same event whatever else differs (Amberflo's identity).
    assert [o["status"] for o in result["outcomes"]] == [
        "ACCEPTED",
        "ACCEPTED",
        "DUPLICATE",
        "DUPLICATE",
    ]
    again = await ingest(gql, [b, a, event(unique_id="c")])
    assert [o["status"] for o in again["outcomes"]] == ["DUPLICATE", "DUPLICATE", "ACCEPTED"]

    # Without uniqueId the whole record is the identity: 1 and 1.0 are the same record.
    plain = event(unique_id=None, value=1)
    result = await ingest(gql, [plain, {**plain, "meterValue": 1.0}, {**plain, "meterValue": 2}])
    assert [o["status"] for o in result["outcomes"]] == ["ACCEPTED", "DUPLICATE", "ACCEPTED"]
    assert (await ingest(gql, [plain]))["duplicates"] == 1

    stored = await all_events(gql)
    assert sorted(e["meterValue"] for e in stored) == ["1", "1", "1", "1", "2"]
    assert len(stored) == 5  # a, b, c, plain(1), plain(2)


async def test_concurrent_retries_count_once(http: httpx.AsyncClient, gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")
    batch = [event(value=i) for i in range(200)]
    results = await asyncio.gather(*(ingest(gql, batch) for _ in range(8)))
    assert sum(r["accepted"] for r in results) == 200
    assert sum(r["duplicates"] for r in results) == 200 * 7
    stored = await all_events(gql)
    assert len(stored) == 200
    assert sorted(float(e["meterValue"]) for e in stored) == list(range(200))


async def test_one_bad_event_in_a_thousand_rejects_only_itself(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls", dimensions=["region"])
    await create_meter(gql, "old")
    await gql('mutation { deprecateMeter(meterApiName: "old") { __typename } }')
    bad_cases = {
        "UNKNOWN_METER": event(meter="nope"),
        "DEPRECATED_METER": event(meter="old"),
        "FUTURE_TIME": event(at=NOW_MS + 10 * 60_000),
        "INVALID_TIME": event(at=1_700_000_000),  # seconds, not milliseconds
        "UNKNOWN_DIMENSION": event(colour="red"),
        "INVALID_DIMENSIONS": event(region="x" * 201),
        "INVALID_CUSTOMER_ID": event(customer=" padded "),
    }
    for code, bad in bad_cases.items():
        batch = [event(value=1, region="eu") for _ in range(1000)]
        batch[517] = bad
        result = await ingest(gql, batch)
        assert result["accepted"] == 999, code
        assert result["rejected"] == 1, code
        rejected = result["outcomes"][517]
        assert rejected["status"] == "REJECTED"
        assert rejected["code"] == code, (code, rejected)
        assert rejected["message"], code
        assert rejected["index"] == 517
    assert len(await all_events(gql)) == 999 * len(bad_cases)


async def test_dimension_value_rules_and_messages(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")  # no declared dimensions: any key is fine
    result = await ingest(
        gql, [event(anything="ok"), event(empty=""), {**event(), "dimensions": {"n": 1}}]
    )
    assert [o["status"] for o in result["outcomes"]] == ["ACCEPTED", "REJECTED", "REJECTED"]
    assert "1-200 characters" in result["outcomes"][1]["message"]
    assert "must be a string" in result["outcomes"][2]["message"]


async def test_meter_type_rules(gql: GraphQLClient) -> None:
    await create_meter(gql, "mau", "UNIQUE_COUNT", dimensions=["user"], aggregationDimension="user")
    await create_meter(gql, "vm-time", "DURATION", dimensions=["vm"])
    result = await ingest(
        gql,
        [
            event("mau", user="u1"),
            event("mau"),
            event("vm-time", value=1, vm="a"),
            event("vm-time", value=5, vm="a"),
        ],
    )
    assert [o["code"] for o in result["outcomes"]] == [
        None,
        "MISSING_DIMENSION",
        None,
        "INVALID_VALUE",
    ]


async def test_draft_meters_take_sample_events(gql: GraphQLClient) -> None:
    await create_meter(gql, "draft", activate=False)
    assert (await ingest(gql, [event("draft")]))["accepted"] == 1


async def test_customers_are_created_on_first_event_unless_switched_off(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")
    await ingest(gql, [event(customer="new-one")])
    customer = (await gql('{ customer(customerId: "new-one") { customerId name } }'))["customer"]
    assert customer == {"customerId": "new-one", "name": "new-one"}

    await gql("mutation { updateAccount(input: {autoCreateCustomers: false}) { __typename } }")
    result = await ingest(gql, [event(customer="stranger"), event(customer="new-one")])
    assert [o["code"] for o in result["outcomes"]] == ["UNKNOWN_CUSTOMER", None]
    assert (await gql('{ customer(customerId: "stranger") { name } }'))["customer"] is None


async def test_cancelled_events_leave_the_default_listing(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")
    batch = [event(unique_id=f"e{i}") for i in range(5)]
    await ingest(gql, batch)
    cancel = """mutation($ids: [String!]!) { cancelMeterEvents(meterApiName: "calls",
        uniqueIds: $ids) { __typename ... on CancelledMeterEvents { cancelled alreadyCancelled
        notFound } ... on Error { code } } }"""
    result = (await gql(cancel, {"ids": ["e1", "e3", "nope"]}))["cancelMeterEvents"]
    assert result == {
        "__typename": "CancelledMeterEvents",
        "cancelled": ["e1", "e3"],
        "alreadyCancelled": [],
        "notFound": ["nope"],
    }
    again = (await gql(cancel, {"ids": ["e1"]}))["cancelMeterEvents"]
    assert again["alreadyCancelled"] == ["e1"]

    assert [e["uniqueId"] for e in await all_events(gql)] == ["e0", "e2", "e4"]
    everything = await all_events(gql, includeCancelled=True)
    assert [(e["uniqueId"], e["cancelledAt"] is not None) for e in everything] == [
        ("e0", False),
        ("e1", True),
        ("e2", False),
        ("e3", True),
        ("e4", False),
    ]
    # A cancelled identity stays taken: re-sending it is a duplicate, not a resurrection.
    assert (await ingest(gql, [batch[1]]))["duplicates"] == 1

    unknown = (
        await gql(
            'mutation { cancelMeterEvents(meterApiName: "x", uniqueIds: ["a"]) { __typename } }'
        )
    )["cancelMeterEvents"]
    assert unknown["__typename"] == "NotFoundError"


async def test_by_event_filters_and_pages(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")
    await create_meter(gql, "other")
    hour = 3_600_000
    base = NOW_MS - 10 * hour
    await ingest(
        gql,
        [event(customer=f"c{i % 3}", at=base + i * hour) for i in range(9)]
        + [event("other", customer="c9")],
    )
    assert len(await all_events(gql, meterApiName="calls")) == 9
    assert len(await all_events(gql, customerId="c1")) == 3
    window = await all_events(
        gql, meterApiName="calls", startTime=_iso(base + 2 * hour), endTime=_iso(base + 5 * hour)
    )
    assert len(window) == 3
    first = (
        await gql(
            "{ meterEvents(first: 4) { edges { cursor } pageInfo { hasNextPage endCursor } } }"
        )
    )["meterEvents"]
    assert len(first["edges"]) == 4 and first["pageInfo"]["hasNextPage"]


def _iso(millis: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(millis / 1000, UTC).isoformat()


async def test_ingest_scoped_key_can_ingest_but_not_read(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")
    key = (
        await gql("""mutation { createApiKey(input: {name: "p", scope: INGEST}) {
        ... on CreatedApiKey { secret } } }""")
    )["createApiKey"]["secret"]
    assert (await ingest(gql, [event()], key=key))["accepted"] == 1
    errors = await gql.errors("{ meterEvents { edges { cursor } } }", key=key)
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_batch_limit_is_a_clear_error(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")
    batch = [event(unique_id=str(i)) for i in range(10_001)]
    errors = await gql.errors(
        """mutation($events: [MeterEventInput!]!) {
        ingestMeterEvents(events: $events) { accepted } }""",
        {"events": batch},
    )
    assert errors[0]["extensions"]["code"] == "BATCH_TOO_LARGE"
    assert "10001 records; the limit is 10000" in errors[0]["message"]
    assert await all_events(gql) == []


async def test_accounts_do_not_share_identities(
    gql: GraphQLClient, http: httpx.AsyncClient, session_factory
) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import make_account

    other = GraphQLClient(http, (await make_account(session_factory)).admin_key)
    for client in (gql, other):
        await create_meter(client, "calls")
    shared = event(unique_id=str(uuid.uuid4()))
    assert (await ingest(gql, [shared]))["accepted"] == 1
    assert (await ingest(other, [shared]))["accepted"] == 1
    assert len(await all_events(other)) == 1
