"""Introspection and "Did you mean ...?" hints map the schema: admin keys only. Customer
session tokens and ingest keys get neither, over HTTP like any client."""

from __future__ import annotations

from typing import Any

import pytest

from tests.client import GraphQLClient, TestAccount
from tests.ws import connect

SCHEMA = "{ __schema { queryType { name } } }"
TYPE = '{ __type(name: "Meter") { name fields { name } } }'
FIELD_TYPO = '{ walet(customerId: "c") { balance } }'  # wallet
ARGUMENT_TYPO = '{ wallet(customerID: "c") { balance } }'  # customerId
USAGE = """query($i: UsageQueryInput!) { usage(input: $i) { intervals } }"""
ENUM_TYPO = {
    "i": {
        "meterApiName": "calls",
        "timeGroupingInterval": "DAYS",  # DAY
        "startTime": "2026-11-01T00:00:00Z",
        "endTime": "2026-11-02T00:00:00Z",
    }
}


async def customer_token(gql: GraphQLClient) -> str:
    await gql('mutation { createCustomer(input: {customerId: "c"}) { __typename } }')
    created = await gql(
        'mutation { createCustomerSession(customerId: "c") { ... on CustomerSession { token } } }'
    )
    return created["createCustomerSession"]["token"]  # type: ignore[no-any-return]


async def ingest_key(gql: GraphQLClient) -> str:
    created = await gql("""mutation { createApiKey(input: {name: "producer", scope: INGEST}) {
        ... on CreatedApiKey { secret } } }""")
    return created["createApiKey"]["secret"]  # type: ignore[no-any-return]


def messages(errors: list[dict[str, Any]]) -> str:
    return " ".join(e["message"] for e in errors)


async def test_admin_keys_get_introspection_and_suggestions(gql: GraphQLClient) -> None:
    assert (await gql(SCHEMA))["__schema"]["queryType"]["name"] == "Query"
    assert (await gql(TYPE))["__type"]["name"] == "Meter"
    assert "Did you mean" in messages(await gql.errors(FIELD_TYPO))
    assert "Did you mean" in messages(await gql.errors(ARGUMENT_TYPO))
    assert "Did you mean" in messages(await gql.errors(USAGE, ENUM_TYPO))


@pytest.mark.parametrize("who", ["customer token", "ingest key"])
async def test_customer_tokens_and_ingest_keys_get_neither(gql: GraphQLClient, who: str) -> None:
    key = await (customer_token(gql) if who == "customer token" else ingest_key(gql))
    for query in (SCHEMA, TYPE, "{ meters { label } __schema { types { name } } }"):
        response = await gql.post(query, key=key)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body.get("data") is None, body  # refused before anything runs
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", body
        assert "introspection" in body["errors"][0]["message"]
        assert "admin" in body["errors"][0]["message"]
    for query, variables in ((FIELD_TYPO, None), (ARGUMENT_TYPO, None), (USAGE, ENUM_TYPO)):
        errors = await gql.errors(query, variables, key=key)
        text = messages(errors)
        assert "Did you mean" not in text, text
        assert "DAY'" not in text and "'wallet'" not in text
    # __typename is no introspection: widgets and typed unions rely on it.
    assert (await gql("{ __typename }", key=key)) == {"__typename": "Query"}
    # Validated here with the limiters' rules too.
    many_aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(40)) + " }"
    assert "aliases" in messages(await gql.errors(many_aliases, key=key))


async def test_over_websocket_too(server: str, gql: GraphQLClient, account: TestAccount) -> None:
    token = await customer_token(gql)
    async with connect(server, {"token": token}) as ws:
        await ws.start(SCHEMA)
        refused = await ws.message()
        assert refused["type"] == "error", refused
        assert refused["payload"][0]["extensions"]["code"] == "FORBIDDEN"
    async with connect(server, {"apiKey": account.admin_key}) as ws:
        await ws.start(SCHEMA)
        assert (await ws.data())["__schema"]["queryType"]["name"] == "Query"
