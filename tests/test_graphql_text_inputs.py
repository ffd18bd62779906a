"""GraphQL string arguments holding a NUL or a lone surrogate: a clear BAD_INPUT error,
before anything touches the database (PostgreSQL cannot store either), never an internal error.
`ingestMeterEvents` is the exception: there a bad event is rejected on its own."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.client import GraphQLClient, TestAccount
from tests.helpers import all_events, create_meter, event, ingest
from tests.ws import connect

HOSTILE = ["bad\x00name", "bad\ud800name", "\udfff"]

# (operation, variables builder): each passes the hostile text through a variable.
THROUGH_VARIABLES: list[tuple[str, Any]] = [
    (
        "query($n: String!) { meter(meterApiName: $n) { meterApiName } }",
        lambda text: {"n": text},
    ),
    (
        "mutation($n: String!) { activateMeter(meterApiName: $n) { __typename } }",
        lambda text: {"n": text},
    ),
    (
        "query($c: String!) { customer(customerId: $c) { customerId } }",
        lambda text: {"c": text},
    ),
    (
        """mutation($input: CreateCustomerInput!) { createCustomer(input: $input) {
        __typename } }""",
        lambda text: {"input": {"customerId": "fine", "name": text}},
    ),
    (
        """mutation($input: CreateCustomerInput!) { createCustomer(input: $input) {
        __typename } }""",
        lambda text: {"input": {"customerId": "fine2", "traits": {"tier": text}}},
    ),
    (
        """query($f: MeterEventFilter) { meterEvents(filter: $f, first: 5) {
        edges { node { uniqueId } } } }""",
        lambda text: {"f": {"meterApiName": "ok", "customerId": text}},
    ),
]


async def _post(gql: GraphQLClient, query: str, variables: Any = None) -> httpx.Response:
    """As a JSON client sends it: a lone surrogate travels as its \\u escape (httpx's own
    encoder would refuse to send it)."""
    body = json.dumps({"query": query, "variables": variables or {}})
    return await gql.http.post(
        "/graphql",
        content=body,
        headers={"X-API-Key": gql.key or "", "Content-Type": "application/json"},
    )


def _refused(body: dict[str, Any]) -> str:
    assert body.get("data") in (None, {}), body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_INPUT", error
    assert "Internal server error" not in error["message"]
    return str(error["message"])


@pytest.mark.parametrize("text", HOSTILE, ids=["nul", "high-surrogate", "low-surrogate"])
@pytest.mark.parametrize("case", range(len(THROUGH_VARIABLES)))
async def test_hostile_text_in_variables_is_refused(
    gql: GraphQLClient, case: int, text: str
) -> None:
    query, variables = THROUGH_VARIABLES[case]
    response = await _post(gql, query, variables(text))
    assert response.status_code == 200, response.text
    assert "NUL character or an unpaired surrogate" in _refused(response.json())


async def test_hostile_text_in_literals_and_fragments_is_refused(gql: GraphQLClient) -> None:
    # GraphQL's own escape \u0000 in a string literal, inside a fragment.
    response = await _post(
        gql,
        'query { ...q } fragment q on Query { meter(meterApiName: "m\\u0000") { meterApiName } }',
    )
    assert response.status_code == 200, response.text
    assert "meter.meterApiName" in _refused(response.json())
    # A lone surrogate escape in a literal is already a syntax error of graphql-core's.
    response = await _post(gql, '{ meter(meterApiName: "m\\ud800") { meterApiName } }')
    assert response.status_code < 500, response.text
    [error] = response.json()["errors"]
    assert "Invalid Unicode escape sequence" in error["message"], error


async def test_nothing_was_written_and_normal_text_still_works(gql: GraphQLClient) -> None:
    response = await _post(
        gql,
        """mutation($input: CreateCustomerInput!) { createCustomer(input: $input) {
        __typename } }""",
        {"input": {"customerId": "nul-cust", "name": "x\x00y"}},
    )
    _refused(response.json())
    data = await gql('{ customer(customerId: "nul-cust") { customerId } }')
    assert data["customer"] is None
    # Non-ASCII text that PostgreSQL stores is fine: a surrogate *pair* is one character.
    created = await gql(
        """mutation($input: CreateCustomerInput!) { createCustomer(input: $input) {
        __typename ... on Customer { name } } }""",
        {"input": {"customerId": "emoji", "name": "caf\u00e9 \U0001f600"}},
    )
    assert created["createCustomer"] == {"__typename": "Customer", "name": "caf\u00e9 \U0001f600"}


async def test_ingest_keeps_rejecting_per_event(gql: GraphQLClient) -> None:
    """The exception: one hostile event in ingestMeterEvents costs only itself."""
    await create_meter(gql, "texts")
    result = await ingest(
        gql,
        [
            event("texts", "c1", 1, unique_id="good-1"),
            event("texts", "c1", 1, unique_id="bad\x00id"),
            event("texts", "c1", 1, unique_id="good-2"),
        ],
    )
    statuses = [o["status"] for o in result["outcomes"]]
    assert statuses == ["ACCEPTED", "REJECTED", "ACCEPTED"], result
    stored = sorted(e["uniqueId"] for e in await all_events(gql))
    assert stored == ["good-1", "good-2"]


async def test_hostile_text_over_websocket_is_refused(server: str, account: TestAccount) -> None:
    async with connect(server, {"apiKey": account.admin_key}) as ws:
        op = await ws.start(
            "subscription($c: String!) { invoiceUpdated(customerId: $c) { id } }",
            # A NUL: a lone surrogate never gets this far, the socket refuses such a message
            # outright (4400, tests/test_websocket_messages.py).
            {"c": "a\u0000"},
        )
        message = await ws.message()
        assert message["id"] == op
        assert message["type"] == "error", message
        [error] = message["payload"]
        assert "NUL character or an unpaired surrogate" in error["message"], error
