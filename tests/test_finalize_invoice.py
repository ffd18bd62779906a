"""finalizeInvoice through HTTP, with a real server and worker: the invoice closes now and
includes every event committed before the call."""

from __future__ import annotations

import asyncio
import subprocess
import time
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from typing import Any

import pytest

from meterflow.db import SessionFactory
from meterflow.services import period_close
from tests.client import GraphQLClient
from tests.helpers import create_meter, ingest
from tests.test_billing_api import CURRENT, INVOICE_FIELDS, assign, make_plan

D = Decimal

FINALIZE = f"""mutation($id: ID!) {{ finalizeInvoice(id: $id) {{
    __typename
    ... on Invoice {{ {INVOICE_FIELDS} }}
    ... on Error {{ code message }}
    ... on InvalidTransitionError {{ currentStatus }}
}} }}"""


@pytest.fixture(autouse=True)
def _worker(worker: subprocess.Popen[bytes]) -> None:
    """A worker rolls up and re-rates, as in production: the mutation must not depend on it."""


def events(customer: str, values: list[str]) -> list[dict[str, Any]]:
    millis = int((datetime.now(UTC) - timedelta(seconds=5)).timestamp() * 1000)
    return [
        {
            "meterApiName": "Tokens",
            "customerId": customer,
            # A JSON number (what every client sends); these values are exact in binary.
            "meterValue": float(value),
            "meterTimeInMillis": millis,
            "uniqueId": f"{customer}-{i}-{value}",
        }
        for i, value in enumerate(values)
    ]


def priced(values: list[str], unit_price: str, fee: str) -> Decimal:
    exact = sum((Fraction(v) for v in values), Fraction(0)) * Fraction(unit_price) + Fraction(fee)
    return (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )


async def usage_total(gql: GraphQLClient, customer: str) -> Decimal:
    start = datetime.now(UTC) - timedelta(days=2)
    answer = await gql(
        """query($s: DateTime!, $e: DateTime!, $c: [String!]!) { usage(input: {
        meterApiName: "Tokens", timeGroupingInterval: DAY, startTime: $s, endTime: $e,
        filter: {customerId: $c}}) { groups { total } } }""",
        {"s": start.isoformat(), "e": (start + timedelta(days=3)).isoformat(), "c": [customer]},
    )
    return sum((Decimal(g["total"]) for g in answer["usage"]["groups"]), Decimal(0))


async def test_finalize_now_includes_the_batch_just_ingested(
    gql: GraphQLClient, session_factory: SessionFactory
) -> None:
    await create_meter(gql, "Tokens")
    plan = await make_plan(
        gql,
        [{"meterApiName": "Tokens", "priceModel": {"type": "per_unit", "unitPrice": "0.003"}}],
        fees=[{"name": "platform", "amount": "2.00"}],
    )
    await assign(gql, "leaver", plan)
    opened = (await gql(CURRENT, {"c": "leaver"}))["currentInvoice"]
    assert opened["status"] == "OPEN"

    batch = ["1250", "17.5", "333", "0.25"]
    accepted = await ingest(gql, events("leaver", batch))
    assert accepted["accepted"] == len(batch)
    done = (await gql(FINALIZE, {"id": opened["id"]}))["finalizeInvoice"]  # at once

    assert done["__typename"] == "Invoice", done
    assert done["status"] == "FINALIZED" and done["finalizedAt"] is not None
    assert (done["periodStart"], done["periodEnd"]) == (opened["periodStart"], opened["periodEnd"])
    # 1600.75 tokens at 0.003 = 4.80225, plus the 2.00 fee: 6.80225 → 6.80
    assert D(done["total"]) == priced(batch, "0.003", "2.00") == D("6.80")

    # A FINALIZED invoice cannot be finalized again; an unknown id is not found.
    again = (await gql(FINALIZE, {"id": opened["id"]}))["finalizeInvoice"]
    assert (again["__typename"], again["code"], again["currentStatus"]) == (
        "InvalidTransitionError",
        "INVALID_TRANSITION",
        "FINALIZED",
    )
    assert "only an OPEN or GRACE invoice" in again["message"]
    for unknown in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        missing = (await gql(FINALIZE, {"id": unknown}))["finalizeInvoice"]
        assert (missing["__typename"], missing["code"]) == ("NotFoundError", "NOT_FOUND")

    # Later usage of the period is stored and counted in usage, but billed nowhere: neither the
    # worker's re-rates nor the periodic close touch the finalized invoice.
    more = ["900"]
    await ingest(gql, events("leaver", more))
    deadline = time.monotonic() + 20
    while await usage_total(gql, "leaver") != sum(map(D, batch + more)):
        assert time.monotonic() < deadline, "the worker never rolled the late batch up"
        await asyncio.sleep(0.1)
    await period_close.close_all(session_factory, clock=lambda: datetime.now(UTC))
    listing = await gql(
        f"""{{ invoices(customerId: "leaver") {{ edges {{ node {{ {INVOICE_FIELDS} }} }} }} }}"""
    )
    locked = {k: v for k, v in done.items() if k != "__typename"}
    assert [e["node"] for e in listing["invoices"]["edges"]] == [locked]
    current = (await gql(CURRENT, {"c": "leaver"}))["currentInvoice"]
    assert current == locked


async def test_finalize_invoice_is_for_admins_only(gql: GraphQLClient) -> None:
    await create_meter(gql, "Tokens")
    plan = await make_plan(
        gql, [{"meterApiName": "Tokens", "priceModel": {"type": "per_unit", "unitPrice": "1"}}]
    )
    await assign(gql, "viewer", plan)
    invoice = (await gql(CURRENT, {"c": "viewer"}))["currentInvoice"]
    minted = await gql(
        """mutation { createCustomerSession(customerId: "viewer") {
             ... on CustomerSession { token } } }"""
    )
    token = minted["createCustomerSession"]["token"]
    response = await gql.post(FINALIZE, {"id": invoice["id"]}, key=token)
    body = response.json()
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
    still = (await gql(CURRENT, {"c": "viewer"}))["currentInvoice"]
    assert still["status"] == "OPEN"
