"""Usage over HTTP, fed by a real worker process: GraphQL, Amberflo's /usage, currentUsage."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.client import GraphQLClient, TestAccount
from tests.helpers import create_meter, ingest

USAGE = """
query($input: UsageQueryInput!) {
  usage(input: $input) {
    meterApiName meterType intervals
    groups { group total values { start value percentageFromPrevious } }
  }
}"""

HOUR = timedelta(hours=1)
BASE = (datetime.now(UTC) - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)


def at(hours: float) -> int:
    return int((BASE + hours * HOUR).timestamp() * 1000)


def ev(
    value: float, hours: float, customer: str = "c1", uid: str | None = None, **dims: str
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "meterApiName": "calls",
        "customerId": customer,
        "meterValue": value,
        "meterTimeInMillis": at(hours),
        "dimensions": dims or {"region": "eu"},
    }
    if uid:
        record["uniqueId"] = uid
    return record


async def usage_when(
    gql: GraphQLClient, variables: dict[str, Any], ready: Any, within: float = 15
) -> dict[str, Any]:
    """Poll the usage query until `ready(result)`: the worker rolls up asynchronously."""
    deadline = time.monotonic() + within
    while True:
        result = (await gql(USAGE, {"input": variables}))["usage"]
        if ready(result):
            return result  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"usage never became ready: {result}"
        await asyncio.sleep(0.1)


def total(result: dict[str, Any]) -> Decimal:
    return sum((Decimal(g["total"]) for g in result["groups"]), Decimal(0))


@pytest.fixture
async def meter(gql: GraphQLClient, worker: subprocess.Popen[bytes]) -> None:
    await create_meter(gql, "calls", dimensions=["region"])


async def test_ingested_events_show_up_grouped_and_bucketed(
    gql: GraphQLClient, meter: None
) -> None:
    await ingest(gql, [ev(2, 0.5), ev(3, 0.7, region="us"), ev(5, 1.2), ev(7, 2.1, "c2")])
    query = {
        "meterApiName": "calls",
        "timeGroupingInterval": "HOUR",
        "startTime": BASE.isoformat(),
        "endTime": (BASE + 3 * HOUR).isoformat(),
        "groupBy": ["customerId"],
    }
    result = await usage_when(gql, query, lambda r: total(r) == 17)
    assert result["meterType"] == "SUM"
    assert result["intervals"] == [(BASE + i * HOUR).isoformat() for i in range(3)]
    groups = {g["group"]["customerId"]: g for g in result["groups"]}
    assert Decimal(groups["c1"]["total"]) == 10
    assert [Decimal(v["value"]) for v in groups["c1"]["values"]] == [5, 5, 0]
    assert [v["percentageFromPrevious"] for v in groups["c1"]["values"]] == [
        None,
        "0.00",
        "-100.00",
    ]
    assert Decimal(groups["c2"]["total"]) == 7
    assert result["groups"][0]["group"] == {"customerId": "c1"}  # ordered by total

    by_region = (
        await gql(
            USAGE, {"input": {**query, "groupBy": ["region"], "filter": {"customerId": ["c1"]}}}
        )
    )["usage"]
    assert {g["group"]["region"]: Decimal(g["total"]) for g in by_region["groups"]} == {
        "eu": 7,
        "us": 3,
    }
    top = (await gql(USAGE, {"input": {**query, "limit": 1}}))["usage"]
    assert [g["group"] for g in top["groups"]] == [{"customerId": "c1"}]
    daily = (
        await gql(USAGE, {"input": {**query, "timeGroupingInterval": "DAY", "groupBy": None}})
    )["usage"]
    assert Decimal(daily["groups"][0]["total"]) == 17


async def test_cancelled_events_leave_usage(gql: GraphQLClient, meter: None) -> None:
    await ingest(gql, [ev(4, 0.2, uid="keep"), ev(6, 0.4, uid="drop")])
    query = {
        "meterApiName": "calls",
        "timeGroupingInterval": "DAY",
        "startTime": BASE.isoformat(),
        "endTime": (BASE + 2 * HOUR).isoformat(),
    }
    await usage_when(gql, query, lambda r: total(r) == 10)
    await gql(
        'mutation { cancelMeterEvents(meterApiName: "calls", uniqueIds: ["drop"]) { __typename } }'
    )
    await usage_when(gql, query, lambda r: total(r) == 4)


async def test_late_events_count_in_their_own_hour(gql: GraphQLClient, meter: None) -> None:
    query = {
        "meterApiName": "calls",
        "timeGroupingInterval": "HOUR",
        "startTime": BASE.isoformat(),
        "endTime": (BASE + 4 * HOUR).isoformat(),
    }
    await ingest(gql, [ev(1, 3.5)])
    await usage_when(gql, query, lambda r: total(r) == 1)
    await ingest(gql, [ev(10, 0.5)])  # older than what the rollup has already seen
    result = await usage_when(gql, query, lambda r: total(r) == 11)
    assert [Decimal(v["value"]) for v in result["groups"][0]["values"]] == [10, 0, 0, 1]


async def test_current_usage_on_customer(gql: GraphQLClient, meter: None) -> None:
    now_ms = int(datetime.now(UTC).timestamp() * 1000) - 1000
    await ingest(gql, [{**ev(9, 0), "meterTimeInMillis": now_ms, "customerId": "cu"}])
    deadline = time.monotonic() + 15
    while True:
        data = (
            await gql(
                '{ customer(customerId: "cu") { currentUsage { meterApiName value '
                "periodStart periodEnd } } }"
            )
        )["customer"]["currentUsage"]
        if data and Decimal(data[0]["value"]) == 9:
            break
        assert time.monotonic() < deadline, data
        await asyncio.sleep(0.1)
    start = datetime.fromisoformat(data[0]["periodStart"])
    assert start.day == 1 and start.hour == 0


async def test_amberflo_usage_api(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, meter: None
) -> None:
    await ingest(gql, [ev(2, 0.5, "a"), ev(3, 1.5, "a"), ev(4, 1.5, "b")])
    query = {
        "meterApiName": "calls",
        "timeGroupingInterval": "HOUR",
        "startTime": BASE.isoformat(),
        "endTime": (BASE + 2 * HOUR).isoformat(),
    }
    await usage_when(gql, query, lambda r: total(r) == 9)
    body = {
        "meterApiName": "calls",
        "aggregation": "sum",
        "timeGroupingInterval": "hour",
        "timeRange": {
            "startTimeInSeconds": int(BASE.timestamp()),
            "endTimeInSeconds": int((BASE + 2 * HOUR).timestamp()),
        },
        "groupBy": ["customerId"],
        "take": {"limit": 5, "isAscending": False},
    }
    response = await http.post(
        "/usage/", content=json.dumps(body), headers={"X-API-KEY": account.admin_key}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    start = int(BASE.timestamp())
    assert answer["secondsSinceEpochIntervals"] == [start, start + 3600]
    assert answer["metadata"]["meterApiName"] == "calls"
    meters_ = {m["group"]["groupInfo"]["customerId"]: m for m in answer["clientMeters"]}
    assert meters_["a"]["groupValue"] == 5
    assert [v["value"] for v in meters_["a"]["values"]] == [2, 3]
    assert meters_["a"]["values"][1]["percentageFromPrevious"] == 50
    assert meters_["b"]["groupValue"] == 4
    counted = await http.post(
        "/usage",
        content=json.dumps({**body, "aggregation": "COUNT"}),
        headers={"X-API-KEY": account.admin_key},
    )
    assert {
        m["group"]["groupInfo"]["customerId"]: m["groupValue"]
        for m in counted.json()["clientMeters"]
    } == {"a": 2, "b": 1}
    for bad, status in (
        ({**body, "meterApiName": "nope"}, 404),
        ({**body, "timeGroupingInterval": "YEAR"}, 400),
        ({**body, "aggregation": "MIN"}, 400),
    ):
        response = await http.post(
            "/usage", content=json.dumps(bad), headers={"X-API-KEY": account.admin_key}
        )
        assert response.status_code == status, (bad, response.text)
    assert (await http.post("/usage", content="{}")).status_code == 401


async def test_usage_input_errors(gql: GraphQLClient, meter: None) -> None:
    base = {
        "meterApiName": "calls",
        "timeGroupingInterval": "DAY",
        "startTime": BASE.isoformat(),
        "endTime": (BASE + HOUR).isoformat(),
    }
    for changes, code, words in (
        ({"meterApiName": "nope"}, "NOT_FOUND", "no meter"),
        ({"endTime": BASE.isoformat()}, "VALIDATION_ERROR", "after startTime"),
        ({"groupBy": ["colour"]}, "VALIDATION_ERROR", "dimensions"),
        ({"filter": {"region": "eu"}}, "VALIDATION_ERROR", "list of strings"),
        (
            {"timeGroupingInterval": "HOUR", "startTime": (BASE - timedelta(days=800)).isoformat()},
            "VALIDATION_ERROR",
            "limit",
        ),
    ):
        errors = await gql.errors(USAGE, {"input": {**base, **changes}})
        assert errors[0]["extensions"]["code"] == code, (changes, errors)
        assert words in errors[0]["message"], (changes, errors)
