"""Authentication, key scopes and tenant isolation, over HTTP."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from meterflow.db import SessionFactory
from meterflow.models import ApiKeyScope
from tests.client import GraphQLClient, TestAccount
from tests.conftest import make_account

METERS = "{ meters { meterApiName label } }"
CUSTOMERS = "{ customers { edges { node { customerId name } } } }"


async def test_missing_key_is_401_with_a_clear_message(http: httpx.AsyncClient) -> None:
    response = await http.post("/graphql", json={"query": METERS})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    assert "X-API-Key" in error["message"]


async def test_wrong_and_malformed_keys_are_401(
    http: httpx.AsyncClient, account: TestAccount
) -> None:
    for headers in (
        {"X-API-Key": "mf_" + "x" * 43},
        {"X-API-Key": "not-a-key"},
        {"Authorization": "Bearer mf_wrong"},
        {"Authorization": f"Basic {account.admin_key}"},
        {"X-API-Key": account.admin_key[:-1]},
    ):
        response = await http.post("/graphql", json={"query": METERS}, headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_key_accepted_in_either_header_any_case(
    http: httpx.AsyncClient, account: TestAccount
) -> None:
    for headers in (
        {"X-API-Key": account.admin_key},
        {"x-api-key": account.admin_key},
        {"X-API-KEY": account.admin_key},
        {"Authorization": f"Bearer {account.admin_key}"},
        {"authorization": f"bearer {account.admin_key}"},
    ):
        response = await http.post("/graphql", json={"query": METERS}, headers=headers)
        assert response.status_code == 200, headers
        assert response.json() == {"data": {"meters": []}}


async def test_graphiql_page_needs_no_key(http: httpx.AsyncClient) -> None:
    response = await http.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
    # A query sent by GET is an API call like any other.
    assert (await http.get("/graphql", params={"query": METERS})).status_code == 401


async def test_ingest_scoped_key_cannot_manage_the_account(
    gql: GraphQLClient, session_factory: SessionFactory, account: TestAccount
) -> None:
    created = await gql("""mutation { createApiKey(input: {name: "producer", scope: INGEST}) {
        ... on CreatedApiKey { secret apiKey { prefix scope } } } }""")
    ingest_key = created["createApiKey"]["secret"]
    assert created["createApiKey"]["apiKey"]["scope"] == "INGEST"
    assert ingest_key.startswith(created["createApiKey"]["apiKey"]["prefix"])

    errors = await gql.errors(
        'mutation { createMeter(input: {meterApiName: "x", meterType: SUM}) { __typename } }',
        key=ingest_key,
    )
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    assert "ingest" in errors[0]["message"]
    for query in (METERS, CUSTOMERS, "{ apiKeys { prefix } }"):
        errors = await gql.errors(query, key=ingest_key)
        assert errors[0]["extensions"]["code"] == "FORBIDDEN", query
    # The refused mutation left nothing behind.
    assert (await gql(METERS))["meters"] == []


async def test_revoked_key_stops_working_at_once(gql: GraphQLClient) -> None:
    created = (
        await gql("""mutation { createApiKey(input: {name: "temp", scope: ADMIN}) {
        ... on CreatedApiKey { secret apiKey { id } } } }""")
    )["createApiKey"]
    assert (await gql.post(METERS, key=created["secret"])).status_code == 200
    revoked = await gql(
        "mutation($id: ID!) { revokeApiKey(id: $id) { ... on ApiKey { revokedAt } } }",
        {"id": created["apiKey"]["id"]},
    )
    assert revoked["revokeApiKey"]["revokedAt"] is not None
    assert (await gql.post(METERS, key=created["secret"])).status_code == 401


async def test_keys_are_stored_hashed(
    gql: GraphQLClient, session_factory: SessionFactory, account: TestAccount
) -> None:
    async with session_factory() as session:
        rows = (
            await session.execute(
                text("SELECT key_hash, prefix FROM api_keys WHERE account_id = :a"),
                {"a": account.account_id},
            )
        ).all()
    assert rows
    for key_hash, prefix in rows:
        assert account.admin_key not in key_hash
        assert len(key_hash) == 64
        assert len(prefix) < len(account.admin_key) // 3
    listed = (await gql("{ apiKeys { prefix } }"))["apiKeys"]
    assert all(account.admin_key not in str(row) for row in listed)


async def test_accounts_never_see_each_other(
    http: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    a = GraphQLClient(http, (await make_account(session_factory, "A")).admin_key)
    b = GraphQLClient(http, (await make_account(session_factory, "B")).admin_key)
    # The same ids in both accounts are fine: they are different customers and meters.
    for client, label in ((a, "A"), (b, "B")):
        created = await client(
            """mutation($n: String!) {
            createCustomer(input: {customerId: "shared", name: $n}) { __typename }
            createMeter(input: {meterApiName: "shared", meterType: SUM, label: $n}) { __typename }
        }""",
            {"n": label},
        )
        assert created == {
            "createCustomer": {"__typename": "Customer"},
            "createMeter": {"__typename": "Meter"},
        }
    await a('mutation { createCustomer(input: {customerId: "only-a"}) { __typename } }')
    await a('mutation { activateMeter(meterApiName: "shared") { __typename } }')

    for client, label in ((a, "A"), (b, "B")):
        assert (await client('{ customer(customerId: "shared") { name } }'))["customer"] == {
            "name": label
        }
        assert (await client('{ meter(meterApiName: "shared") { label } }'))["meter"] == {
            "label": label
        }
    assert [e["node"]["customerId"] for e in (await b(CUSTOMERS))["customers"]["edges"]] == [
        "shared"
    ]
    assert (await b('{ customer(customerId: "only-a") { name } }'))["customer"] is None
    # A's activation did not touch B's meter of the same name, and B cannot change A's.
    assert (await b('{ meter(meterApiName: "shared") { status } }'))["meter"]["status"] == "DRAFT"
    await b('mutation { deprecateMeter(meterApiName: "shared") { __typename } }')
    assert (await a('{ meter(meterApiName: "shared") { status } }'))["meter"]["status"] == "ACTIVE"
    # Updating "only-a" from B finds nothing.
    result = await b(
        'mutation { updateCustomer(input: {customerId: "only-a", name: "x"}) { __typename } }'
    )
    assert result["updateCustomer"]["__typename"] == "NotFoundError"
    # A cursor from A's list does not reveal A's rows to B.
    cursor = (await a("{ customers(first: 1) { pageInfo { endCursor } } }"))["customers"][
        "pageInfo"
    ]["endCursor"]
    page = await b(
        "query($c: String) { customers(after: $c) { edges { node { customerId } } } }",
        {"c": cursor},
    )
    assert all(e["node"]["customerId"] != "only-a" for e in page["customers"]["edges"])


async def test_ingest_scope_from_the_service_layer(
    http: httpx.AsyncClient, session_factory: SessionFactory
) -> None:
    ingest = await make_account(session_factory, "ingest-only", scope=ApiKeyScope.INGEST)
    response = await http.post(
        "/graphql", json={"query": "{ account { name } }"}, headers={"X-API-Key": ingest.admin_key}
    )
    assert response.status_code == 200
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
