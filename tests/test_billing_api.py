"""Plans, running invoices and prepaid credits end to end: GraphQL, real events, a worker."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from meterflow.db import SessionFactory
from meterflow.services import period_close
from tests.client import GraphQLClient
from tests.helpers import create_meter, ingest

D = Decimal

CREATE_PLAN = """
mutation($input: CreatePricingPlanInput!) {
  createPricingPlan(input: $input) {
    __typename
    ... on PricingPlan { id status items { meterApiName includedUnits } }
    ... on Error { code message }
    ... on ValidationError { field }
  }
}"""

INVOICE_FIELDS = """id customerId status currency periodStart periodEnd subtotal discount
  creditsApplied total finalizedAt
  lines { kind name meterApiName dimensions units billableUnits amount
          tiers { tier quantity unitPrice amount } }
  discounts { name amount }"""

CURRENT = f"""query($c: String!) {{ currentInvoice(customerId: $c) {{ {INVOICE_FIELDS} }} }}"""


async def make_plan(
    gql: GraphQLClient,
    items: list[dict[str, Any]],
    *,
    interval: str = "MONTH",
    activate: bool = True,
    **extra: Any,
) -> str:
    created = (
        await gql(
            CREATE_PLAN,
            {
                "input": {
                    "name": "plan",
                    "billingPeriod": {"interval": interval},
                    "items": items,
                    **extra,
                }
            },
        )
    )["createPricingPlan"]
    assert created["__typename"] == "PricingPlan", created
    if activate:
        result = await gql(
            "mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }",
            {"id": created["id"]},
        )
        assert result["activatePricingPlan"]["__typename"] == "PricingPlan"
    return created["id"]  # type: ignore[no-any-return]


async def assign(
    gql: GraphQLClient, customer: str, plan_id: str, start: datetime | None = None
) -> None:
    await gql(
        "mutation($c: String!) { createCustomer(input: {customerId: $c}) { __typename } }",
        {"c": customer},
    )
    result = await gql(
        """mutation($input: AssignPricingPlanInput!) {
        assignPricingPlan(input: $input) { __typename ... on Error { message } } }""",
        {
            "input": {
                "customerId": customer,
                "planId": plan_id,
                "startTime": start.isoformat() if start else None,
            }
        },
    )
    assert result["assignPricingPlan"]["__typename"] == "PlanAssignment", result


async def invoice_when(
    gql: GraphQLClient, customer: str, ready: Any, within: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        invoice = (await gql(CURRENT, {"c": customer}))["currentInvoice"]
        if invoice and ready(invoice):
            return invoice  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"invoice never became ready: {invoice}"
        await asyncio.sleep(0.1)


def calls(
    customer: str, count: int, at: datetime | None = None, meter: str = "ApiCalls"
) -> list[dict[str, Any]]:
    millis = int((at or datetime.now(UTC) - timedelta(seconds=5)).timestamp() * 1000)
    return [
        {
            "meterApiName": meter,
            "customerId": customer,
            "meterValue": 1,
            "meterTimeInMillis": millis,
            "uniqueId": str(uuid.uuid4()),
        }
        for _ in range(count)
    ]


@pytest.fixture(autouse=True)
def _worker(worker: subprocess.Popen[bytes]) -> None:
    """Every test here relies on the worker rolling up and re-rating."""


async def test_api_monetization_the_5001st_call_is_the_first_billed(gql: GraphQLClient) -> None:
    await create_meter(gql, "ApiCalls", activate=False)
    plan = await make_plan(
        gql,
        [
            {
                "meterApiName": "ApiCalls",
                "includedUnits": "5000",
                "priceModel": {"type": "package", "packageSize": 1000, "packagePrice": "5.00"},
            }
        ],
    )
    # Activating the plan activated its draft meter.
    assert (await gql('{ meter(meterApiName: "ApiCalls") { status } }'))["meter"][
        "status"
    ] == "ACTIVE"
    await assign(gql, "acme", plan)
    for _ in range(5):
        await ingest(gql, calls("acme", 1000))
    invoice = await invoice_when(gql, "acme", lambda i: D(i["lines"][0]["units"]) == 5000)
    assert D(invoice["total"]) == 0
    assert invoice["status"] == "OPEN" and invoice["currency"] == "USD"

    await ingest(gql, calls("acme", 1))  # the 5,001st call
    invoice = await invoice_when(gql, "acme", lambda i: D(i["lines"][0]["units"]) == 5001)
    assert D(invoice["total"]) == D("5.00")
    assert invoice["lines"][0]["billableUnits"] == "1"
    assert invoice["lines"][0]["tiers"][0]["quantity"] == "1"  # one started block

    await ingest(gql, calls("acme", 999))
    invoice = await invoice_when(gql, "acme", lambda i: D(i["lines"][0]["units"]) == 6000)
    assert D(invoice["total"]) == D("5.00")
    await ingest(gql, calls("acme", 1))
    invoice = await invoice_when(gql, "acme", lambda i: D(i["lines"][0]["units"]) == 6001)
    assert D(invoice["total"]) == D("10.00")


async def test_serverless_gb_seconds_by_cloud_with_prepaid_credits(gql: GraphQLClient) -> None:
    await create_meter(gql, "gb-seconds", dimensions=["function_id", "cloud_provider", "region"])
    prices = {"aws": D("0.0000166667"), "gcp": D("0.0000125")}
    plan = await make_plan(
        gql,
        [
            {
                "meterApiName": "gb-seconds",
                "priceModel": {
                    "type": "dimension",
                    "dimensions": ["cloud_provider"],
                    "prices": [
                        {"values": [c], "model": {"type": "per_unit", "unitPrice": str(p)}}
                        for c, p in prices.items()
                    ],
                    "default": {"type": "per_unit", "unitPrice": "0.00002"},
                },
            }
        ],
    )
    await assign(gql, "lambda-co", plan)
    granted = (
        await gql("""mutation { grantCredits(input: {customerId: "lambda-co",
        amount: "10", reason: "prepaid", priority: 1}) { __typename
        ... on Wallet { currency balance } } }""")
    )["grantCredits"]
    assert granted == {"__typename": "Wallet", "currency": "USD", "balance": "10.00"}

    used = {"aws": D(0), "gcp": D(0)}
    now = datetime.now(UTC) - timedelta(seconds=5)
    for batch in (
        [("aws", 200_000), ("gcp", 100_000)],
        [("aws", 300_000)],
        [("gcp", 500_000), ("aws", 100_000)],
    ):
        events = []
        for cloud, seconds in batch:
            used[cloud] += seconds
            events.append(
                {
                    "meterApiName": "gb-seconds",
                    "customerId": "lambda-co",
                    "meterValue": seconds,
                    "meterTimeInMillis": int(now.timestamp() * 1000),
                    "uniqueId": str(uuid.uuid4()),
                    "dimensions": {"function_id": "f1", "cloud_provider": cloud, "region": "us"},
                }
            )
        await ingest(gql, events)
        # By hand: each cloud's line rounded to cents, credits cover what they can.
        lines = {c: (used[c] * prices[c]).quantize(D("0.01")) for c in used if used[c]}
        subtotal = sum(lines.values(), D(0))
        invoice = await invoice_when(gql, "lambda-co", lambda i, s=subtotal: D(i["subtotal"]) == s)
        assert {
            line["dimensions"]["cloud_provider"]: D(line["amount"]) for line in invoice["lines"]
        } == lines
        credits = min(subtotal, D(10))
        assert D(invoice["creditsApplied"]) == credits
        assert D(invoice["total"]) == subtotal - credits
        wallet = (await gql('{ wallet(customerId: "lambda-co") { balance } }'))["wallet"]
        assert D(wallet["balance"]) == D(10) - credits  # shown after each batch

    ledger = (
        await gql(
            '{ wallet(customerId: "lambda-co") { balance ledger { edges { node { kind '
            "amount balanceAfter invoiceId invoicePeriodStart createdAt updatedAt } } } } }"
        )
    )["wallet"]
    lines = [e["node"] for e in ledger["ledger"]["edges"]]
    # A statement: the grant, then one line for what this invoice holds of it (not one a batch).
    assert [line["kind"] for line in lines] == ["GRANT", "CONSUMPTION"]
    assert D(lines[1]["amount"]) == -credits
    assert lines[1]["invoiceId"] == invoice["id"]
    assert lines[1]["invoicePeriodStart"] == invoice["periodStart"]
    assert datetime.fromisoformat(lines[1]["updatedAt"]) >= datetime.fromisoformat(
        lines[1]["createdAt"]
    )
    assert [D(line["balanceAfter"]) for line in lines] == [D(10), D(10) - credits]
    assert D(ledger["balance"]) == D(10) - credits


async def test_period_boundary_finalize_and_late_events(
    gql: GraphQLClient, session_factory: SessionFactory
) -> None:
    await create_meter(gql, "ApiCalls")
    plan = await make_plan(
        gql,
        [{"meterApiName": "ApiCalls", "priceModel": {"type": "per_unit", "unitPrice": "0.10"}}],
        interval="DAY",
        fees=[{"name": "daily platform fee", "amount": "1.00"}],
    )
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    yesterday = today - timedelta(days=1)
    await assign(gql, "dayco", plan, start=yesterday)
    await ingest(gql, calls("dayco", 10, at=yesterday + timedelta(hours=23, minutes=59)))
    await ingest(gql, calls("dayco", 4, at=today + timedelta(seconds=1)))
    await invoice_when(gql, "dayco", lambda i: D(i["subtotal"]) == D("1.40"))

    await period_close.close_all(session_factory, clock=lambda: datetime.now(UTC))
    listing = (
        f"""{{ invoices(customerId: "dayco") {{ edges {{ node {{ {INVOICE_FIELDS} }} }} }} }}"""
    )
    first = [e["node"] for e in (await gql(listing))["invoices"]["edges"]]
    assert [(i["periodStart"], i["status"], i["subtotal"]) for i in first] == [
        (today.isoformat(), "OPEN", "1.40"),
        (yesterday.isoformat(), "FINALIZED", "2.00"),
    ]

    # Idempotent: a second run finds nothing to do.
    again = await period_close.close_all(session_factory, clock=lambda: datetime.now(UTC))
    assert (again.finalized, again.to_grace) == (0, 0)
    second = [e["node"] for e in (await gql(listing))["invoices"]["edges"]]
    assert second[1] == first[1]

    # A late event for yesterday is stored and shows in usage, but changes nothing billed.
    late = calls("dayco", 3, at=yesterday + timedelta(hours=12))
    await ingest(gql, late + calls("dayco", 1))
    await invoice_when(gql, "dayco", lambda i: D(i["subtotal"]) == D("1.50"))
    usage = await gql(
        """query($s: DateTime!, $e: DateTime!) { usage(input: {meterApiName:
        "ApiCalls", timeGroupingInterval: DAY, startTime: $s, endTime: $e}) {
        groups { values { value } } } }""",
        {"s": yesterday.isoformat(), "e": (today + timedelta(days=1)).isoformat()},
    )
    assert [v["value"] for v in usage["usage"]["groups"][0]["values"]] == ["13", "5"]
    third = [e["node"] for e in (await gql(listing))["invoices"]["edges"]]
    assert third[1] == first[1]
    events = (
        await gql("""{ meterEvents(filter: {customerId: "dayco"}, first: 500) { edges {
        node { uniqueId invoiceId late } } } }""")
    )["meterEvents"]["edges"]
    flags = {e["node"]["uniqueId"]: e["node"] for e in events}
    assert all(flags[e["uniqueId"]]["late"] for e in late)
    assert flags[late[0]["uniqueId"]]["invoiceId"] == first[1]["id"]
    assert not flags[calls_id(events, late)]["late"]


def calls_id(events: list[dict[str, Any]], late: list[dict[str, Any]]) -> str:
    late_ids = {e["uniqueId"] for e in late}
    return next(e["node"]["uniqueId"] for e in events if e["node"]["uniqueId"] not in late_ids)


async def test_plan_rules_and_errors(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls", dimensions=["region"])
    for items, field in (
        ([{"meterApiName": "nope", "priceModel": {"type": "per_unit", "unitPrice": "1"}}], None),
        (
            [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "-1"}}],
            "items[0].priceModel.unitPrice",
        ),
        (
            [
                {
                    "meterApiName": "calls",
                    "priceModel": {
                        "type": "dimension",
                        "dimensions": ["x"],
                        "default": {"type": "per_unit", "unitPrice": "1"},
                    },
                }
            ],
            "items[0].priceModel.dimensions",
        ),
    ):
        result = (
            await gql(
                CREATE_PLAN,
                {"input": {"name": "p", "billingPeriod": {"interval": "MONTH"}, "items": items}},
            )
        )["createPricingPlan"]
        assert result["__typename"] in ("ValidationError", "NotFoundError"), result
        if field:
            assert result["field"] == field
    plan = await make_plan(
        gql,
        [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "1"}}],
        activate=False,
    )
    await gql('mutation { createCustomer(input: {customerId: "x"}) { __typename } }')
    draft = (
        await gql(
            """mutation($id: ID!) { assignPricingPlan(input: {customerId: "x",
        planId: $id}) { __typename ... on InvalidTransitionError { currentStatus } } }""",
            {"id": plan},
        )
    )["assignPricingPlan"]
    assert draft == {"__typename": "InvalidTransitionError", "currentStatus": "DRAFT"}
    await gql("mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }", {"id": plan})
    again = (
        await gql(
            "mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }", {"id": plan}
        )
    )["activatePricingPlan"]
    assert again["__typename"] == "InvalidTransitionError"  # an active plan is immutable
    await gql("mutation($id: ID!) { deprecatePricingPlan(id: $id) { __typename } }", {"id": plan})
    gone = (
        await gql(
            """mutation($id: ID!) { assignPricingPlan(input: {customerId: "x",
        planId: $id}) { __typename } }""",
            {"id": plan},
        )
    )["assignPricingPlan"]
    assert gone["__typename"] == "InvalidTransitionError"
    listed = (await gql("{ pricingPlans(status: DEPRECATED) { id } }"))["pricingPlans"]
    assert [p["id"] for p in listed] == [plan]


async def test_plan_change_mid_period_rerates_and_default_plan(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls")
    cheap = await make_plan(
        gql, [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "0.01"}}]
    )
    dear = await make_plan(
        gql,
        [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "0.05"}}],
        isDefault=True,
    )
    await assign(gql, "switcher", cheap)
    await ingest(gql, calls("switcher", 100, meter="calls"))
    await invoice_when(gql, "switcher", lambda i: D(i["total"]) == D("1.00"))
    await assign(gql, "switcher", dear)
    await invoice_when(gql, "switcher", lambda i: D(i["total"]) == D("5.00"))
    # A customer created from its first event joins the default plan.
    await ingest(gql, calls("newbie", 10, meter="calls"))
    await invoice_when(gql, "newbie", lambda i: D(i["total"]) == D("0.50"))


async def test_custom_currency_credits_with_a_ratio(gql: GraphQLClient) -> None:
    """1,000 CREDITS worth $0.01 each cover a $4.58 invoice: 458 credits are drawn."""
    await create_meter(gql, "calls")
    plan = await make_plan(
        gql, [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "0.0229"}}]
    )
    await assign(gql, "gamer", plan)
    refused = (
        await gql("""mutation { grantCredits(input: {customerId: "gamer", amount: "1000",
        currency: "CREDITS"}) { __typename ... on ValidationError { field } } }""")
    )["grantCredits"]
    assert refused == {"__typename": "ValidationError", "field": "ratio"}
    granted = await gql("""mutation { grantCredits(input: {customerId: "gamer", amount: "1000",
        currency: "CREDITS", ratio: "0.01"}) { ... on Wallet { currency balance } } }""")
    assert granted["grantCredits"] == {"currency": "CREDITS", "balance": "1000.00"}
    await ingest(gql, calls("gamer", 200, meter="calls"))
    invoice = await invoice_when(gql, "gamer", lambda i: D(i["subtotal"]) == D("4.58"))
    assert D(invoice["creditsApplied"]) == D("4.58") and D(invoice["total"]) == 0
    wallet = (
        await gql(
            '{ wallet(customerId: "gamer", currency: "CREDITS") { balance ledger '
            "{ edges { node { kind amount } } } } }"
        )
    )["wallet"]
    assert D(wallet["balance"]) == 542
    consumed = sum(
        D(e["node"]["amount"])
        for e in wallet["ledger"]["edges"]
        if e["node"]["kind"] == "CONSUMPTION"
    )
    assert consumed == -458
    usd = (await gql('{ wallet(customerId: "gamer") { currency balance } }'))["wallet"]
    assert usd == {"currency": "USD", "balance": "0.00"}
