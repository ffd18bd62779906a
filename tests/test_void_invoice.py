"""voidInvoice through HTTP: an operator cancels a closed bill; its credits go back. And
invoice(id), which an invoice's page reads."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from meterflow.db import unit_of_work
from meterflow.models import ApiKeyScope
from meterflow.services import accounts
from tests.client import GraphQLClient
from tests.helpers import create_meter
from tests.test_billing_api import CURRENT, assign, make_plan

RESULT = """__typename
    ... on Invoice { id status total creditsApplied }
    ... on InvalidTransitionError { currentStatus }
    ... on Error { code message }"""
FINALIZE = f"mutation($id: ID!) {{ finalizeInvoice(id: $id) {{ {RESULT} }} }}"
VOID = f"mutation($id: ID!) {{ voidInvoice(id: $id) {{ {RESULT} }} }}"
BALANCE = 'query { wallet(customerId: "leaver") { balance } }'


async def void(gql: GraphQLClient, invoice_id: str) -> Any:
    return (await gql(VOID, {"id": invoice_id}))["voidInvoice"]


async def test_a_finalized_invoice_is_voided_and_its_credits_return(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")
    plan = await make_plan(
        gql,
        [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "1"}}],
        fees=[{"name": "platform", "amount": "2.00"}],
    )
    await assign(gql, "leaver", plan)
    await gql(
        """mutation { grantCredits(input: {customerId: "leaver", amount: "5"}) {
             __typename } }"""
    )
    invoice = (await gql(CURRENT, {"c": "leaver"}))["currentInvoice"]
    assert (invoice["creditsApplied"], invoice["total"]) == ("2.00", "0.00")
    assert Decimal((await gql(BALANCE))["wallet"]["balance"]) == 3

    running = await void(gql, invoice["id"])
    assert running["__typename"] == "InvalidTransitionError"
    assert running["currentStatus"] == "OPEN"
    assert "finalize" in running["message"]

    finalized = (await gql(FINALIZE, {"id": invoice["id"]}))["finalizeInvoice"]
    assert finalized["status"] == "FINALIZED"
    voided = await void(gql, invoice["id"])
    assert voided == {
        "__typename": "Invoice",
        "id": invoice["id"],
        "status": "VOID",
        "total": "0.00",
        "creditsApplied": "0.00",
    }
    assert Decimal((await gql(BALANCE))["wallet"]["balance"]) == 5  # the $2 came back

    again = await void(gql, invoice["id"])
    assert (again["__typename"], again["currentStatus"]) == ("InvalidTransitionError", "VOID")


async def test_an_unknown_invoice_is_not_found(gql: GraphQLClient) -> None:
    missing = await void(gql, "00000000-0000-0000-0000-000000000000")
    assert missing["__typename"] == "NotFoundError"
    assert (await void(gql, "not-a-uuid"))["__typename"] == "NotFoundError"


async def test_an_invoice_is_read_by_its_id_within_its_account(
    gql: GraphQLClient, session_factory: Any
) -> None:
    await create_meter(gql, "calls")
    plan = await make_plan(
        gql,
        [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "1"}}],
        fees=[{"name": "platform", "amount": "2.00"}],
    )
    await assign(gql, "reader", plan)
    current = (await gql(CURRENT, {"c": "reader"}))["currentInvoice"]
    query = "query($id: ID!) { invoice(id: $id) { id customerId total lines { name } } }"
    found = (await gql(query, {"id": current["id"]}))["invoice"]
    assert found == {
        "id": current["id"],
        "customerId": "reader",
        "total": "2.00",
        "lines": [{"name": "calls"}, {"name": "platform"}],
    }
    assert (await gql(query, {"id": "not-a-uuid"}))["invoice"] is None
    async with unit_of_work(session_factory) as session:
        other = await accounts.create_account(session, name="other")
        admin = await accounts.issue_api_key(
            session, account_id=other.id, name="k", scope=ApiKeyScope.ADMIN
        )
        ingest_only = await accounts.issue_api_key(
            session, account_id=other.id, name="i", scope=ApiKeyScope.INGEST
        )
    assert (await gql(query, {"id": current["id"]}, key=admin.secret))["invoice"] is None
    refused = (await gql.post(query, {"id": current["id"]}, key=ingest_only.secret)).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
