"""Bad input is a clear error, never a 500, and the server keeps serving."""

from __future__ import annotations

import httpx

from tests.client import GraphQLClient, TestAccount


async def assert_still_serving(gql: GraphQLClient) -> None:
    assert (await gql("{ meters { meterApiName } }")) == {"meters": []}


async def test_malformed_graphql(gql: GraphQLClient) -> None:
    response = await gql.post("{ meters { meterApiName ")
    assert response.status_code in (200, 400)
    error = response.json()["errors"][0]
    assert "Syntax Error" in error["message"]
    await assert_still_serving(gql)


async def test_unknown_field_and_wrong_enum(gql: GraphQLClient) -> None:
    errors = await gql.errors("{ meters { nope } }")
    assert "Cannot query field 'nope'" in errors[0]["message"]
    errors = await gql.errors("{ meters(status: RETIRED) { meterApiName } }")
    assert "RETIRED" in errors[0]["message"]
    errors = await gql.errors(
        'mutation { createMeter(input: {meterApiName: "m", meterType: "SUM"}) { __typename } }'
    )
    assert "MeterType" in errors[0]["message"]
    await assert_still_serving(gql)


async def test_body_that_is_not_json(http: httpx.AsyncClient, account: TestAccount) -> None:
    response = await http.post(
        "/graphql",
        content=b"{not json",
        headers={"X-API-Key": account.admin_key, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "JSON" in response.text


async def test_over_long_strings_are_typed_validation_errors(gql: GraphQLClient) -> None:
    result = await gql(
        """mutation($d: String!) {
          createMeter(input: {meterApiName: "m", meterType: SUM, description: $d}) {
            __typename ... on ValidationError { field message } } }""",
        {"d": "d" * 2_001},
    )
    assert result["createMeter"]["__typename"] == "ValidationError"
    assert result["createMeter"]["field"] == "description"
    assert "2001 characters" in result["createMeter"]["message"]


async def test_ten_megabyte_body_is_refused_with_413(
    gql: GraphQLClient, http: httpx.AsyncClient, account: TestAccount
) -> None:
    huge = "x" * (10 * 1024 * 1024)
    response = await http.post(
        "/graphql",
        json={"query": "{ meters { label } }", "variables": {"x": huge}},
        headers={"X-API-Key": account.admin_key},
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    # Without a Content-Length (chunked), the limit holds on the bytes actually sent.
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(11):
            yield b"x" * (1024 * 1024)

    response = await http.post(
        "/graphql",
        content=chunks(),
        headers={"X-API-Key": account.admin_key, "Content-Type": "application/json"},
    )
    assert response.status_code == 413
    await assert_still_serving(gql)


async def test_query_nested_fifty_deep_is_refused(gql: GraphQLClient) -> None:
    deep = "{ customers { edges { node { " + "traits { " * 46 + "x" + " }" * 46 + " } } } }"
    errors = await gql.errors(deep)
    assert any("exceeds maximum operation depth" in e["message"] for e in errors), errors
    await assert_still_serving(gql)


async def test_too_many_aliases_and_tokens(gql: GraphQLClient) -> None:
    aliases = "{ " + " ".join(f"a{i}: meters {{ label }}" for i in range(100)) + " }"
    errors = await gql.errors(aliases)
    assert any("aliases" in e["message"].lower() for e in errors), errors
    tokens = "{ meters { " + " ".join(["label"] * 6_000) + " } }"
    errors = await gql.errors(tokens)
    assert any("token" in e["message"].lower() for e in errors), errors
    await assert_still_serving(gql)


async def test_bad_cursor_is_explained_not_masked(gql: GraphQLClient) -> None:
    errors = await gql.errors('{ customers(after: "!!!") { edges { cursor } } }')
    assert errors[0]["message"] == "after is not a cursor this API returned"


def test_unexpected_errors_are_masked_and_expected_ones_are_not() -> None:
    from graphql import GraphQLError

    from meterflow.errors import ValidationError
    from meterflow.graphql_api import should_mask

    assert should_mask(GraphQLError("boom", original_error=RuntimeError("db password=...")))
    assert not should_mask(GraphQLError("bad", original_error=ValidationError("bad")))
    assert not should_mask(GraphQLError("Syntax Error: ..."))
    forbidden = GraphQLError("no", extensions={"code": "FORBIDDEN"})
    assert not should_mask(GraphQLError("no", original_error=forbidden))
