"""Customers through GraphQL over HTTP, as a dashboard would call them."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import httpx
from sqlalchemy import select
from sqlmodel import col

from meterflow.db import SessionFactory
from meterflow.models import PlanAssignment
from tests.client import GraphQLClient, TestAccount
from tests.helpers import create_meter

CREATE = """
mutation($input: CreateCustomerInput!) {
  createCustomer(input: $input) {
    __typename
    ... on Customer { customerId name email traits enabled }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""

UPDATE = """
mutation($input: UpdateCustomerInput!) {
  updateCustomer(input: $input) {
    __typename
    ... on Customer { customerId name email traits enabled }
    ... on Error { code message }
  }
}"""

GET = "query($id: String!) { customer(customerId: $id) { customerId name email traits enabled } }"

LIST = """
query($first: Int, $after: String) {
  customers(first: $first, after: $after) {
    edges { cursor node { customerId } }
    pageInfo { hasNextPage endCursor }
  }
}"""


async def test_create_then_get(gql: GraphQLClient) -> None:
    created = await gql(
        CREATE,
        {
            "input": {
                "customerId": "cust-1",
                "name": "Acme",
                "email": "ap@acme.example",
                "traits": {"stripeId": "cus_123", "tier": "gold"},
            }
        },
    )
    assert created["createCustomer"] == {
        "__typename": "Customer",
        "customerId": "cust-1",
        "name": "Acme",
        "email": "ap@acme.example",
        "traits": {"stripeId": "cus_123", "tier": "gold"},
        "enabled": True,
    }
    fetched = await gql(GET, {"id": "cust-1"})
    assert fetched["customer"]["traits"] == {"stripeId": "cus_123", "tier": "gold"}
    assert (await gql(GET, {"id": "nobody"}))["customer"] is None


async def test_name_defaults_to_customer_id(gql: GraphQLClient) -> None:
    created = await gql(CREATE, {"input": {"customerId": "just-an-id"}})
    assert created["createCustomer"]["name"] == "just-an-id"


async def test_duplicate_customer_id_is_a_typed_conflict(gql: GraphQLClient) -> None:
    await gql(CREATE, {"input": {"customerId": "dup", "name": "First"}})
    again = await gql(CREATE, {"input": {"customerId": "dup", "name": "Second"}})
    assert again["createCustomer"]["__typename"] == "ConflictError"
    assert again["createCustomer"]["code"] == "CONFLICT"
    assert "dup" in again["createCustomer"]["message"]
    # The first one is untouched.
    assert (await gql(GET, {"id": "dup"}))["customer"]["name"] == "First"


async def test_update_changes_only_given_fields(gql: GraphQLClient) -> None:
    await gql(
        CREATE,
        {
            "input": {
                "customerId": "u1",
                "name": "Old",
                "email": "a@b.example",
                "traits": {"k": "v"},
            }
        },
    )
    updated = await gql(UPDATE, {"input": {"customerId": "u1", "name": "New", "enabled": False}})
    assert updated["updateCustomer"] == {
        "__typename": "Customer",
        "customerId": "u1",
        "name": "New",
        "email": "a@b.example",
        "traits": {"k": "v"},
        "enabled": False,
    }
    cleared = await gql(UPDATE, {"input": {"customerId": "u1", "email": "", "traits": {}}})
    assert cleared["updateCustomer"]["email"] is None
    assert cleared["updateCustomer"]["traits"] == {}


async def test_update_unknown_customer_is_not_found(gql: GraphQLClient) -> None:
    result = await gql(UPDATE, {"input": {"customerId": "ghost", "name": "x"}})
    assert result["updateCustomer"]["__typename"] == "NotFoundError"
    assert result["updateCustomer"]["code"] == "NOT_FOUND"


async def test_list_pages_through_every_customer_once(gql: GraphQLClient) -> None:
    ids = [f"c{i:02d}" for i in range(7)]
    for customer_id in ids:
        await gql(CREATE, {"input": {"customerId": customer_id}})
    seen: list[str] = []
    after = None
    pages = 0
    while True:
        page = (await gql(LIST, {"first": 3, "after": after}))["customers"]
        seen += [edge["node"]["customerId"] for edge in page["edges"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    assert seen == ids
    assert pages == 3


async def test_bad_input_is_a_validation_error_naming_the_field(gql: GraphQLClient) -> None:
    cases = [
        ({"customerId": "x" * 201}, "customerId"),
        ({"customerId": "   "}, "customerId"),
        ({"customerId": "ok", "name": "n" * 201}, "name"),
        ({"customerId": "ok", "email": "not-an-email"}, "email"),
        ({"customerId": "ok", "traits": {"n": 5}}, "traits.n"),
        ({"customerId": "ok", "traits": ["a"]}, "traits"),
    ]
    for payload, field in cases:
        result = (await gql(CREATE, {"input": payload}))["createCustomer"]
        assert result["__typename"] == "ValidationError", payload
        assert result["code"] == "VALIDATION_ERROR"
        assert result["field"] == field, (payload, result)
    # Nothing was created by the failed attempts.
    assert (await gql(GET, {"id": "ok"}))["customer"] is None


async def test_page_size_is_bounded(gql: GraphQLClient) -> None:
    errors = await gql.errors(LIST, {"first": 100_000})
    assert "first must be between 1 and" in errors[0]["message"]


async def test_concurrent_first_events_assign_the_default_plan_once(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    session_factory: SessionFactory,
) -> None:
    """20 batches naming the same new customer arrive at once (for 5 new customers, all 100
    at once): each customer is created once, and only the transaction that created it assigns
    the default plan."""
    await create_meter(gql, "calls")
    plan = (
        await gql("""mutation { createPricingPlan(input: {name: "default", billingPeriod:
        {interval: MONTH}, isDefault: true, items: [{meterApiName: "calls", priceModel:
        {type: "per_unit", unitPrice: "0.01"}}]}) { ... on PricingPlan { id } } }""")
    )["createPricingPlan"]["id"]
    activated = await gql(
        "mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }", {"id": plan}
    )
    assert activated["activatePricingPlan"]["__typename"] == "PricingPlan"
    millis = int(datetime.now(UTC).timestamp() * 1000) - 1000

    newcomers = [f"newcomer-{n}" for n in range(5)]

    async def post(customer: str, i: int) -> httpx.Response:
        record = {
            "meterApiName": "calls",
            "customerId": customer,
            "meterValue": 1,
            "meterTimeInMillis": millis,
            "uniqueId": f"first-{i}",
        }
        return await http.post("/ingest", json=[record], headers={"X-API-KEY": account.admin_key})

    answers = await asyncio.gather(*(post(c, i) for i in range(20) for c in newcomers))
    assert [a.status_code for a in answers] == [200] * 100, [a.text for a in answers]
    async with session_factory() as session:
        rows = list(
            await session.execute(
                select(col(PlanAssignment.customer_id), col(PlanAssignment.plan_id))
                .where(col(PlanAssignment.account_id) == account.account_id)
                .order_by(col(PlanAssignment.customer_id))
            )
        )
    assert [(row[0], str(row[1])) for row in rows] == [(c, plan) for c in newcomers]
