"""Amberflo-compatible REST ingest: formats, encodings, status codes, and the real SDK."""

from __future__ import annotations

import gzip
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.client import GraphQLClient, TestAccount
from tests.conftest import running_server
from tests.helpers import NOW_MS, all_events, create_meter, event


def post(
    http: httpx.Client | httpx.AsyncClient,
    body: bytes | str,
    key: str,
    path: str = "/ingest",
    **headers: str,
):  # type: ignore[no-untyped-def]
    return http.post(path, content=body, headers={"X-API-KEY": key, **headers})


@pytest.fixture
async def meter(gql: GraphQLClient) -> str:
    await create_meter(gql, "calls", dimensions=["region", "model"])
    return "calls"


async def test_json_array_on_every_amberflo_path(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    for path in ("/ingest", "/ingest/", "/"):
        batch = [event(region="eu"), event(region="us")]
        response = await post(
            http, json.dumps(batch), account.admin_key, path, **{"Content-Type": "application/json"}
        )
        assert response.status_code == 200, (path, response.text)
        assert response.text == "2 records were ingested"
    assert len(await all_events(gql)) == 6


async def test_single_object_gzip_ndjson_and_csv(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    single = event(unique_id="single")
    response = await post(http, json.dumps(single), account.admin_key)
    assert response.text == "1 records were ingested"

    gz = gzip.compress(json.dumps([event(unique_id="gz1"), event(unique_id="gz2")]).encode())
    response = await post(
        http,
        gz,
        account.admin_key,
        **{"Content-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert (response.status_code, response.text) == (200, "2 records were ingested")

    ndjson = "\n".join(json.dumps(event(unique_id=f"nd{i}")) for i in range(3)) + "\n"
    response = await post(
        http, ndjson, account.admin_key, **{"Content-Type": "application/x-ndjson"}
    )
    assert response.text == "3 records were ingested"
    # NDJSON sniffed without a content type, too.
    response = await post(
        http,
        json.dumps(event(unique_id="nd-a")) + "\n" + json.dumps(event(unique_id="nd-b")),
        account.admin_key,
    )
    assert response.text == "2 records were ingested"

    csv_body = (
        "customerId,meterApiName,meterValue,meterTimeInMillis,uniqueId,region\n"
        f"c1,calls,2.5,{NOW_MS - 1000},csv1,eu\n"
        f"c2,calls,4,{NOW_MS - 1000},csv2,\n"
    )
    response = await post(http, csv_body, account.admin_key, **{"Content-Type": "text/csv"})
    assert (response.status_code, response.text) == (200, "2 records were ingested")

    stored = {e["uniqueId"]: e for e in await all_events(gql)}
    assert set(stored) == {
        "single",
        "gz1",
        "gz2",
        "nd0",
        "nd1",
        "nd2",
        "nd-a",
        "nd-b",
        "csv1",
        "csv2",
    }
    assert stored["csv1"]["meterValue"] == "2.5"
    assert stored["csv1"]["dimensions"] == {"region": "eu"}  # unknown columns are dimensions
    assert stored["csv2"]["dimensions"] == {}  # empty cells carry nothing
    assert stored["csv1"]["customerId"] == "c1"


async def test_values_are_stored_exactly(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    body = (
        '[{"customerId": "c1", "meterApiName": "calls", "uniqueId": "big", '
        f'"meterTimeInMillis": {NOW_MS}, "meterValue": 123456789012345678.123456789012}},'
        '{"customerId": "c1", "meterApiName": "calls", "uniqueId": "tiny", '
        f'"meterTimeInMillis": {NOW_MS}, "meterValue": 0.000000000001}}]'
    )
    assert (await post(http, body, account.admin_key)).status_code == 200
    stored = {e["uniqueId"]: e for e in await all_events(gql)}
    assert stored["big"]["meterValue"] == "123456789012345678.123456789012"
    assert stored["tiny"]["meterValue"] in ("1E-12", "0.000000000001")
    # The payload is the record as sent, number text included.
    assert (
        '"meterValue": 123456789012345678.123456789012' in json.dumps(stored["big"]["payload"])
        or stored["big"]["payload"]["meterValue"] == 123456789012345678.123456789012
    )


async def test_bad_records_are_reported_and_skipped(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    ndjson = "\n".join(
        [
            json.dumps(event(unique_id="ok1")),
            '{"customerId": "c1", "meterApiName": "calls", "meterValue": NaN, '
            f'"meterTimeInMillis": {NOW_MS}}}',
            "{this is not json",
            json.dumps({**event(unique_id="late"), "meterTimeInMillis": NOW_MS + 3_600_000}),
            json.dumps(event(unique_id="ok2")),
        ]
    )
    response = await post(http, ndjson, account.admin_key)
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert lines[0] == "2 records were ingested"
    assert lines[1].startswith("record 1 rejected: NON_FINITE_VALUE")
    assert lines[2].startswith("record 2 rejected: MALFORMED_RECORD: not valid JSON")
    assert lines[3].startswith("record 3 rejected: FUTURE_TIME")

    report = await http.post(
        "/ingest?format=json",
        content=json.dumps([event(unique_id="ok1"), event(meter="nope")]),
        headers={"X-API-KEY": account.admin_key},
    )
    assert report.status_code == 200
    assert report.json() == {
        "message": "1 records were ingested",
        "accepted": 0,
        "duplicates": 1,
        "rejected": 1,
        "rejections": [
            {
                "index": 1,
                "uniqueId": report.json()["rejections"][0]["uniqueId"],
                "code": "UNKNOWN_METER",
                "message": "no meter 'nope' in this account",
            }
        ],
    }
    assert sorted(e["uniqueId"] for e in await all_events(gql)) == ["ok1", "ok2"]


async def test_nothing_usable_is_a_400_so_producers_do_not_retry(
    http: httpx.AsyncClient, account: TestAccount, meter: str
) -> None:
    response = await post(http, json.dumps([event(meter="nope")]), account.admin_key)
    assert response.status_code == 400
    assert "UNKNOWN_METER" in response.text


@pytest.mark.parametrize(
    "body,expected",
    [
        (b"{broken", "not valid JSON"),  # read as one NDJSON line: that record is the problem
        (b'[{"a": 1},,]', "invalid JSON"),
        (b"", "empty"),
        (b"hello world", "not a JSON object or array"),
        (b"\xff\xfe\x00", "not UTF-8"),
        (b"customerId,meterValue\nc1,1\n", "lacks meterApiName"),
    ],
)
async def test_unreadable_bodies_are_400(
    http: httpx.AsyncClient, account: TestAccount, body: bytes, expected: str
) -> None:
    response = await post(http, body, account.admin_key)
    assert response.status_code == 400, response.text
    assert expected in response.text


async def test_bad_gzip_and_gzip_bombs(http: httpx.AsyncClient, account: TestAccount) -> None:
    response = await post(
        http, b"\x1f\x8bnot really gzip", account.admin_key, **{"Content-Encoding": "gzip"}
    )
    assert response.status_code == 400
    bomb = gzip.compress(b"[" + b" " * (20 * 1024 * 1024) + b"]")
    assert len(bomb) < 100_000
    response = await post(http, bomb, account.admin_key, **{"Content-Encoding": "gzip"})
    assert response.status_code == 413


async def test_auth_and_batch_limits(
    http: httpx.AsyncClient, account: TestAccount, meter: str
) -> None:
    assert (await http.post("/ingest", content="[]")).status_code == 401
    assert (await post(http, "[]", "mf_wrong")).status_code == 401
    big = json.dumps([event() for _ in range(10_001)])
    response = await post(http, big, account.admin_key)
    assert response.status_code == 413
    assert "10001 records; the limit is 10000" in response.text


def test_the_real_amberflo_python_sdk_ingests(server: str, account: TestAccount) -> None:
    """Amberflo's own SDK, unmodified but for its base URL (gzip, /ingest/, X-API-KEY)."""
    import asyncio

    from metering.ingest.api_client import IngestApiClient, create_ingest_payload
    from metering.session.ingest_session import IngestSession

    async def setup() -> None:
        async with httpx.AsyncClient(base_url=server) as http:
            await create_meter(
                GraphQLClient(http, account.admin_key), "ApiCalls", dimensions=["region"]
            )

    asyncio.run(setup())
    IngestSession.root_url = server
    client = IngestApiClient(account.admin_key)
    payloads = [
        create_ingest_payload(
            meter_api_name="ApiCalls",
            meter_value=value,
            meter_time_in_millis=NOW_MS - 1000,
            customer_id="sdk-c",
            dimensions={"region": "us"},
        )
        for value in (1, 2, 3)
    ]
    assert client.send(payloads) == "3 records were ingested"
    assert client.send(payloads) == "3 records were ingested"  # a retry: duplicates, counted once

    async def stored() -> list[dict]:  # type: ignore[type-arg]
        async with httpx.AsyncClient(base_url=server) as http:
            return await all_events(GraphQLClient(http, account.admin_key))

    events = asyncio.run(stored())
    assert sorted(e["meterValue"] for e in events) == ["1", "2", "3"]
    assert {e["customerId"] for e in events} == {"sdk-c"}


@pytest.fixture
def server_without_redis(server_env: dict[str, str]) -> Iterator[str]:
    """An API process whose Redis is unreachable (nothing listens on port 1): its /healthz
    says 503 by design."""
    env = {**server_env, "METERFLOW_REDIS_URL": "redis://127.0.0.1:1/0"}
    with running_server(env, health=503) as base:
        yield base


async def test_ingestion_with_redis_down_accepts_and_persists(
    server_without_redis: str, gql: GraphQLClient, account: TestAccount, meter: str
) -> None:
    async with httpx.AsyncClient(base_url=server_without_redis, timeout=30) as http:
        started = time.monotonic()
        for i in range(5):
            response = await post(http, json.dumps([event(unique_id=f"r{i}")]), account.admin_key)
            assert (response.status_code, response.text) == (200, "1 records were ingested")
        # Skipping the enqueue must not cost a timeout per request.
        assert time.monotonic() - started < 5
        via_graphql = await GraphQLClient(http, account.admin_key)(
            """mutation($e: [MeterEventInput!]!) { ingestMeterEvents(events: $e) { accepted } }""",
            {"e": [event(unique_id="g1")]},
        )
        assert via_graphql["ingestMeterEvents"]["accepted"] == 1
    # Durable: read back through the healthy server.
    assert sorted(e["uniqueId"] for e in await all_events(gql)) == [
        "g1",
        "r0",
        "r1",
        "r2",
        "r3",
        "r4",
    ]


def test_database_down_is_a_503_so_producers_retry(server_env: dict[str, str]) -> None:
    env = {**server_env, "METERFLOW_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    with running_server(env, health=503) as base:
        response = httpx.post(
            f"{base}/ingest", content="[]", headers={"X-API-KEY": "mf_" + "a" * 43}
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        graphql = httpx.post(
            f"{base}/graphql",
            json={"query": "{ meters { label } }"},
            headers={"X-API-Key": "mf_" + "a" * 43},
        )
        assert graphql.status_code == 503
