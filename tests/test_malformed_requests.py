"""Every malformed HTTP request gets a clear 4xx, never a 500, and the server keeps serving:
POST/GET /graphql bodies and parameters, Amberflo's POST /session and POST /usage."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.client import GraphQLClient, TestAccount
from tests.helpers import create_meter

METERS = "{ meters { meterApiName } }"


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


async def assert_healthy(http: httpx.AsyncClient, gql: GraphQLClient) -> None:
    assert (await http.get("/healthz")).status_code == 200
    assert "meters" in await gql(METERS)


def bad_request(response: httpx.Response, *words: str) -> dict[str, Any]:
    """A 400 in the GraphQL shape whose message says what is wrong."""
    assert response.status_code == 400, response.text
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST", error
    for word in words:
        assert word in error["message"], (word, error)
    return error  # type: ignore[no-any-return]


async def test_a_lone_surrogate_in_the_query_text_is_a_syntax_error(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount
) -> None:
    """Valid JSON (a lone surrogate may sit in one ingested event, rejected alone), but no
    GraphQL document: a clear syntax error, never a 500."""
    response = await http.post(
        "/graphql",
        content=b'{"query": "\\ud800"}',
        headers={"X-API-Key": account.admin_key, "Content-Type": "application/json"},
    )
    assert response.status_code in (200, 400), response.text
    [error] = response.json()["errors"]
    assert "Syntax Error" in error["message"], error
    await assert_healthy(http, gql)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"null", ("JSON object",)),
        (b"123", ("JSON object",)),
        (b'"x"', ("JSON object",)),
        (b"[]", ("JSON object",)),
        (b"[1]", ("JSON object",)),
        (b"true", ("JSON object",)),
        (b'{"query": 123}', ("query", "string")),
        (b'{"query": {"a": 1}}', ("query", "string")),
        (b'{"query": "{ meters { label } }", "variables": [1]}', ("variables", "object")),
        (b'{"query": "{ meters { label } }", "variables": "x"}', ("variables", "object")),
        (b'{"query": "{ meters { label } }", "operationName": 5}', ("operationName",)),
        (b'{"query": "{ meters { label } }", "extensions": 5}', ("extensions",)),
        (b'{"query": "\xff\xfe"}', ("JSON", "UTF-8")),
        (b"\xff\xfe\x00", ("JSON",)),
        (
            b'{"query": "{ meters { label } }", "variables": {"x": '
            + nested(100_000).encode()
            + b"}}",
            ("nested deeper than 64",),
        ),
        (
            b'{"query": "{ meters { label } }", "variables": {"x": ' + nested(70).encode() + b"}}",
            ("nested deeper than 64",),
        ),
    ],
    ids=[
        "null",
        "number",
        "string",
        "empty-list",
        "list",
        "bool",
        "query-number",
        "query-object",
        "variables-list",
        "variables-string",
        "operation-name-number",
        "extensions-number",
        "not-utf8-inside",
        "not-utf8",
        "nested-100000",
        "nested-70",
    ],
)
async def test_malformed_graphql_bodies_are_400(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    body: bytes,
    words: tuple[str, ...],
) -> None:
    response = await http.post(
        "/graphql",
        content=body,
        headers={"X-API-Key": account.admin_key, "Content-Type": "application/json"},
    )
    bad_request(response, *words)
    await assert_healthy(http, gql)


async def test_variables_nested_within_the_limit_still_work(gql: GraphQLClient) -> None:
    # 58 levels inside the body's own three: within the 64-level limit, so the request reaches
    # the resolver, which explains what is wrong with the filter.
    errors = await gql.errors(
        """query($x: JSON) { usage(input: {meterApiName: "nope", timeGroupingInterval: DAY,
             startTime: "2026-01-01T00:00:00Z", endTime: "2026-01-02T00:00:00Z", filter: $x})
             { intervals } }""",
        {"x": {"k": json.loads(nested(58))}},
    )
    assert errors[0]["extensions"]["code"] == "VALIDATION_ERROR", errors
    assert "list of strings" in errors[0]["message"]


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"query": METERS, "variables": "[1]"}, ("variables", "object")),
        ({"query": METERS, "variables": "{not json"}, ("JSON",)),
        ({"query": METERS, "variables": '"x"'}, ("variables", "object")),
        ({"query": METERS, "variables": '{"x": ' + nested(5_000) + "}"}, ("nested deeper",)),
        ({"query": METERS, "variables": '{"x": ' + nested(70) + "}"}, ("nested deeper",)),
        ({"query": METERS, "extensions": "[1]"}, ("extensions", "object")),
    ],
    ids=["list", "not-json", "string", "nested-5000", "nested-70", "extensions-list"],
)
async def test_graphql_get_with_bad_variables_is_400(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    params: dict[str, str],
    words: tuple[str, ...],
) -> None:
    response = await http.get("/graphql", params=params, headers={"X-API-Key": account.admin_key})
    bad_request(response, *words)
    await assert_healthy(http, gql)


async def test_unsupported_content_type_is_a_graphql_shaped_400(
    http: httpx.AsyncClient, account: TestAccount
) -> None:
    response = await http.post(
        "/graphql",
        content=b"query=x",
        headers={"X-API-Key": account.admin_key, "Content-Type": "text/plain"},
    )
    bad_request(response, "Content-Type")


# ---------------------------------------------------------------- POST /session


def session_body(expiration: str) -> bytes:
    return b'{"customerId": "portal", "expirationEpochMilliSeconds": ' + expiration.encode() + b"}"


@pytest.mark.parametrize(
    ("expiration", "words"),
    [
        ("NaN", "JSON"),
        ("Infinity", "JSON"),
        ("-Infinity", "JSON"),
        ("1e400", "JSON"),
        ("-1", "expirationEpochMilliSeconds"),
        ("0", "expirationEpochMilliSeconds"),
        ('"tomorrow"', "expirationEpochMilliSeconds"),
        ('"1700000000000"', "expirationEpochMilliSeconds"),
        ("true", "expirationEpochMilliSeconds"),
        ("[1]", "expirationEpochMilliSeconds"),
        ("253402300800000", "expirationEpochMilliSeconds"),  # year 10000
        ("1e20", "expirationEpochMilliSeconds"),
        ("1e300", "expirationEpochMilliSeconds"),
    ],
)
async def test_session_with_bad_expiration_is_400(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    expiration: str,
    words: str,
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "portal"}) { __typename } }')
    response = await http.post(
        "/session",
        content=session_body(expiration),
        headers={"X-API-KEY": account.admin_key, "Content-Type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert words in response.json()["error"], response.text
    await assert_healthy(http, gql)


async def amberflo_bad_request(
    http: httpx.AsyncClient, gql: GraphQLClient, key: str, path: str, body: bytes, words: str
) -> None:
    """An Amberflo REST endpoint answers 400 naming the problem, and the server stays healthy."""
    response = await http.post(
        path, content=body, headers={"X-API-KEY": key, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert words in response.json()["error"], response.text
    await assert_healthy(http, gql)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"null", "JSON object"),
        (b"123", "JSON object"),
        (b"[]", "JSON object"),
        (b"\xff", "JSON"),
        (b'{"customerId": ' + nested(100_000).encode() + b"}", "nested deeper than 64"),
        (b'{"customerId": 5}', "customerId"),
        (b'{"customerId": "a\\u0000b"}', "customerId"),
    ],
    ids=["null", "number", "list", "not-utf8", "nested", "id-number", "id-nul"],
)
async def test_session_with_bad_body_is_400(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    body: bytes,
    words: str,
) -> None:
    await amberflo_bad_request(http, gql, account.admin_key, "/session", body, words)


async def test_session_with_a_sane_expiration_still_works(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount
) -> None:
    import time

    await gql('mutation { createCustomer(input: {customerId: "portal"}) { __typename } }')
    expires = int(time.time() * 1000) + 3_600_000
    response = await http.post(
        "/session",
        json={"customerId": "portal", "expirationEpochMilliSeconds": expires},
        headers={"X-API-KEY": account.admin_key},
    )
    assert response.status_code == 200, response.text
    assert response.json()["sessionToken"].startswith("mfs_")


# ---------------------------------------------------------------- POST /usage


USAGE_BODY: dict[str, Any] = {
    "meterApiName": "calls",
    "timeGroupingInterval": "DAY",
    "timeRange": {"startTimeInSeconds": 1_759_968_000, "endTimeInSeconds": 1_760_054_400},
}


def with_changes(**changes: Any) -> bytes:
    body: dict[str, Any] = json.loads(json.dumps(USAGE_BODY))
    time_range = changes.pop("timeRange", None)
    if isinstance(time_range, dict):
        body["timeRange"] = {**body["timeRange"], **time_range}
    elif time_range is not None:
        changes["timeRange"] = time_range
    for key, value in changes.items():
        if value is ...:
            body.pop(key, None)
        else:
            body[key] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (with_changes(timeRange={"startTimeInSeconds": 1e20}), "startTimeInSeconds"),
        (with_changes(timeRange={"startTimeInSeconds": -1}), "startTimeInSeconds"),
        (with_changes(timeRange={"startTimeInSeconds": "yesterday"}), "startTimeInSeconds"),
        (with_changes(timeRange={"startTimeInSeconds": True}), "startTimeInSeconds"),
        (with_changes(timeRange={"startTimeInSeconds": 1.5}), "startTimeInSeconds"),
        (with_changes(timeRange={"endTimeInSeconds": 1e20}), "endTimeInSeconds"),
        (with_changes(timeRange={"endTimeInSeconds": "x"}), "endTimeInSeconds"),
        (with_changes(timeRange="x"), "timeRange"),
        (with_changes(timeRange=...), "timeRange"),
        (
            b'{"meterApiName": "calls", "timeGroupingInterval": "DAY", '
            b'"timeRange": {"startTimeInSeconds": NaN}}',
            "JSON",
        ),
        (
            b'{"meterApiName": "calls", "timeGroupingInterval": "DAY", '
            b'"timeRange": {"startTimeInSeconds": 1e400}}',
            "JSON",
        ),
        (with_changes(take="x"), "take"),
        (with_changes(take={"limit": "5"}), "take.limit"),
        (with_changes(take={"limit": -1}), "take.limit"),
        (with_changes(take={"limit": 0}), "take.limit"),
        (with_changes(take={"limit": 1e300}), "take.limit"),
        (with_changes(take={"limit": 2.5}), "take.limit"),
        (with_changes(take={"limit": 5, "isAscending": "yes"}), "take.isAscending"),
        (with_changes(take=[5]), "take"),
        (with_changes(timeGroupingInterval="FORTNIGHT"), "timeGroupingInterval"),
        (with_changes(timeGroupingInterval=7), "timeGroupingInterval"),
        (with_changes(timeGroupingInterval=...), "timeGroupingInterval"),
        (with_changes(meterApiName=["calls"]), "meterApiName"),
        (with_changes(meterApiName=...), "meterApiName"),
        (with_changes(filter=["customerId"]), "filter"),
        (with_changes(filter={"customerId": 5}), "filter"),
        (with_changes(filter={"customerId": [{"a": 1}]}), "filter"),
        (with_changes(filter={"customerId": ["a\u0000"]}), "filter"),
        (with_changes(groupBy="customerId"), "groupBy"),
        (with_changes(groupBy=[1]), "groupBy"),
        (with_changes(groupBy=[["customerId"]]), "groupBy"),
        (with_changes(aggregation=5), "aggregation"),
        (b"null", "JSON object"),
        (b"123", "JSON object"),
        (b"[]", "JSON object"),
        (b"\xff", "JSON"),
        (b'{"meterApiName": ' + nested(100_000).encode() + b"}", "nested deeper than 64"),
    ],
    ids=[
        "start-1e20",
        "start-negative",
        "start-string",
        "start-bool",
        "start-fraction",
        "end-1e20",
        "end-string",
        "range-string",
        "range-missing",
        "start-nan",
        "start-1e400",
        "take-string",
        "take-limit-string",
        "take-limit-negative",
        "take-limit-zero",
        "take-limit-huge",
        "take-limit-fraction",
        "take-ascending-string",
        "take-list",
        "interval-unknown",
        "interval-number",
        "interval-missing",
        "meter-list",
        "meter-missing",
        "filter-list",
        "filter-number",
        "filter-objects",
        "filter-nul",
        "group-by-string",
        "group-by-numbers",
        "group-by-lists",
        "aggregation-number",
        "null",
        "number",
        "list",
        "not-utf8",
        "nested",
    ],
)
async def test_usage_with_bad_body_is_400(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    body: bytes,
    words: str,
) -> None:
    await create_meter(gql, "calls", dimensions=["region"])
    await amberflo_bad_request(http, gql, account.admin_key, "/usage", body, words)


async def test_usage_with_a_good_body_still_answers(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "calls", dimensions=["region"])
    response = await http.post(
        "/usage",
        content=with_changes(
            take={"limit": 3, "isAscending": True},
            groupBy=["customerId"],
            filter={"region": "eu"},
        ),
        headers={"X-API-KEY": account.admin_key},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["secondsSinceEpochIntervals"]) == 1


@pytest.mark.parametrize(
    "document",
    [
        '{ customer(customerId: "a\\u0000b") { name } }',
        '{ meterEvents(filter: {customerId: "a\\u0000b"}) { edges { cursor } } }',
        '{ meterEvents(filter: {meterApiName: "\\u0000"}) { edges { cursor } } }',
    ],
    ids=["customer", "events-customer", "events-meter"],
)
async def test_values_the_database_cannot_hold_are_bad_input_not_masked(
    http: httpx.AsyncClient, gql: GraphQLClient, document: str
) -> None:
    errors = await gql.errors(document)
    assert errors[0]["extensions"]["code"] == "BAD_INPUT", errors
    # Refused before execution (schema/input_text.py); PostgreSQL's own refusal ("0x00", SQLSTATE
    # class 22) is the backstop for anything that check does not see.
    assert "NUL character" in errors[0]["message"] or "0x00" in errors[0]["message"], errors
    assert "SELECT" not in errors[0]["message"]
    await assert_healthy(http, gql)
