"""Exact numbers at every edge (issue 12): proration, meter values, /usage, money precision and
how money is written, and date-times without an offset. Through HTTP to a real server and
worker, with figures computed independently (by hand and with fractions.Fraction)."""

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

D = Decimal

PLAN = """mutation($input: CreatePricingPlanInput!) { createPricingPlan(input: $input) {
  __typename ... on PricingPlan { id fees discounts minimumSpend freeTierAmount }
  ... on Error { code message } ... on ValidationError { field } } }"""
ACTIVATE = "mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }"
CUSTOMER = "mutation($c: String!) { createCustomer(input: {customerId: $c}) { __typename } }"
ASSIGN = """mutation($input: AssignPricingPlanInput!) { assignPricingPlan(input: $input) {
  __typename ... on Error { code message } } }"""
INVOICES = """query($c: String!) { invoices(customerId: $c, first: 50) { edges { node {
  periodStart currency subtotal discount creditsApplied total lines { name amount }
  discounts { name amount } } } } }"""
GRANT = """mutation($input: GrantCreditsInput!) { grantCredits(input: $input) { __typename
  ... on Wallet { currency balance ledger { edges { node { kind amount balanceAfter } } } }
  ... on Error { code message } ... on ValidationError { field } } }"""
USAGE = """query($input: UsageQueryInput!) { usage(input: $input) { groups { group total
  values { value } } } }"""


# Over HTTP ----------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _worker(worker: subprocess.Popen[bytes]) -> None:
    """Invoices and usage come from the worker's rollups and re-rating."""


async def _plan(gql: GraphQLClient, **fields: Any) -> dict[str, Any]:
    result = await gql(
        PLAN,
        {"input": {"name": "p", "billingPeriod": {"interval": "MONTH"}, "items": [], **fields}},
    )
    return result["createPricingPlan"]  # type: ignore[no-any-return]


async def _active_plan(gql: GraphQLClient, **fields: Any) -> str:
    plan = await _plan(gql, **fields)
    assert plan["__typename"] == "PricingPlan", plan
    await gql(ACTIVATE, {"id": plan["id"]})
    return plan["id"]  # type: ignore[no-any-return]


async def _assign(gql: GraphQLClient, customer: str, plan: str, start: str | None) -> None:
    await gql(CUSTOMER, {"c": customer})
    result = await gql(
        ASSIGN, {"input": {"customerId": customer, "planId": plan, "startTime": start}}
    )
    assert result["assignPricingPlan"]["__typename"] == "PlanAssignment", result


async def _invoice(
    gql: GraphQLClient, customer: str, period_start: str | None = None, within: float = 20
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        edges = (await gql(INVOICES, {"c": customer}))["invoices"]["edges"]
        nodes = [e["node"] for e in edges]
        found = [n for n in nodes if period_start is None or n["periodStart"] == period_start]
        if found:
            return found[-1]  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, f"no invoice for {period_start}: {nodes}"
        await asyncio.sleep(0.1)


async def test_the_50000_fee_invoice_through_the_api(gql: GraphQLClient) -> None:
    plan = await _active_plan(gql, fees=[{"name": "platform", "amount": "50000", "prorated": True}])
    await _assign(gql, "acme", plan, "2026-01-10T13:37:00Z")
    invoice = await _invoice(gql, "acme", "2026-01-01T00:00:00+00:00")
    assert invoice["lines"] == [{"name": "platform", "amount": "34568.77"}]
    assert invoice["subtotal"] == invoice["total"] == "34568.77"


async def test_money_inputs_must_fit_the_currency_minor_unit(gql: GraphQLClient) -> None:
    for currency, fields, field in [
        ("USD", {"fees": [{"name": "f", "amount": "9.995"}]}, "fees.amount"),
        ("JPY", {"fees": [{"name": "f", "amount": "1.5"}]}, "fees.amount"),
        ("USD", {"minimumSpend": "10.001"}, "minimumSpend"),
        ("KWD", {"freeTierAmount": "1.0005"}, "freeTierAmount"),
        (
            "USD",
            {"discounts": [{"name": "d", "kind": "FIXED", "value": "0.125"}]},
            "discounts.value",
        ),
        (
            "USD",
            {"discounts": [{"name": "d", "kind": "PERCENT", "value": "10", "cap": "5.555"}]},
            "discounts.cap",
        ),
    ]:
        refused = await _plan(gql, currency=currency, **fields)
        assert refused["__typename"] == "ValidationError", (currency, fields, refused)
        assert refused["field"] == field
        assert currency in refused["message"] and "decimal places" in refused["message"]
    # Within the minor unit, and rates (a percentage) with more places, are fine.
    kept = await _plan(
        gql,
        currency="KWD",
        fees=[{"name": "f", "amount": "1.005"}],
        discounts=[{"name": "d", "kind": "PERCENT", "value": "12.3456"}],
        minimumSpend="2",
    )
    assert kept["__typename"] == "PricingPlan", kept
    assert kept["fees"][0]["amount"] == "1.005" and kept["minimumSpend"] == "2.000"
    assert kept["discounts"][0]["value"] == "12.3456"

    plan = await _active_plan(gql)
    await _assign(gql, "wallet", plan, None)
    refused = (await gql(GRANT, {"input": {"customerId": "wallet", "amount": "9.995"}}))[
        "grantCredits"
    ]
    assert refused["__typename"] == "ValidationError" and refused["field"] == "amount", refused
    assert "USD" in refused["message"]
    # A custom currency counts its own units: up to 12 places, not 13.
    custom = {"customerId": "wallet", "currency": "CREDITS", "ratio": "0.01"}
    taken = (await gql(GRANT, {"input": {**custom, "amount": "0.000000000001"}}))["grantCredits"]
    assert taken["__typename"] == "Wallet" and taken["balance"] == "0.000000000001", taken
    refused = (await gql(GRANT, {"input": {**custom, "amount": "0.0000000000001"}}))["grantCredits"]
    assert refused["__typename"] == "ValidationError" and refused["field"] == "amount", refused


async def test_money_is_written_at_the_currency_minor_unit(gql: GraphQLClient) -> None:
    for currency, zero in (("USD", "0.00"), ("JPY", "0"), ("KWD", "0.000")):
        plan = await _active_plan(gql, currency=currency)
        customer = f"free-{currency}"
        await _assign(gql, customer, plan, None)
        invoice = await _invoice(gql, customer)
        assert invoice["currency"] == currency
        assert [invoice[k] for k in ("subtotal", "discount", "creditsApplied", "total")] == [
            zero
        ] * 4, invoice
    plan = await _active_plan(
        gql,
        fees=[{"name": "platform", "amount": "25"}],
        discounts=[{"name": "off", "kind": "FIXED", "value": "5"}],
        minimumSpend="10",
    )
    await _assign(gql, "payer", plan, None)
    invoice = await _invoice(gql, "payer")
    assert invoice["lines"] == [{"name": "platform", "amount": "25.00"}]
    assert invoice["discounts"] == [{"name": "off", "amount": "5.00"}]
    assert (invoice["subtotal"], invoice["discount"], invoice["total"]) == (
        "25.00",
        "5.00",
        "20.00",
    )
    loaded = await gql(
        "query($id: ID!) { pricingPlan(id: $id) { fees discounts minimumSpend } }", {"id": plan}
    )
    assert loaded["pricingPlan"]["fees"][0]["amount"] == "25.00"
    assert loaded["pricingPlan"]["discounts"][0]["value"] == "5.00"
    assert loaded["pricingPlan"]["minimumSpend"] == "10.00"
    empty = (await gql('{ wallet(customerId: "payer") { balance } }'))["wallet"]
    assert empty == {"balance": "0.00"}
    granted = (await gql(GRANT, {"input": {"customerId": "payer", "amount": "100"}}))[
        "grantCredits"
    ]
    assert granted["balance"] == "80.00", granted  # the open invoice drew $20 at once
    grant = granted["ledger"]["edges"][0]["node"]
    assert (grant["kind"], grant["amount"], grant["balanceAfter"]) == ("GRANT", "100.00", "100.00")


# Meter values and /usage ---------------------------------------------------------------------

BIG = 9007199254740993  # 2^53 + 1: the first integer a double cannot hold


def _millis(ago: timedelta = timedelta(minutes=5)) -> int:
    return int((datetime.now(UTC) - ago).timestamp() * 1000)


async def _ingest_raw(http: httpx.AsyncClient, key: str, events_json: str) -> dict[str, Any]:
    """The GraphQL body written by hand, so that the numbers are exactly the JSON we choose."""
    query = """mutation($events: [MeterEventInput!]!) { ingestMeterEvents(events: $events) {
      accepted rejected outcomes { index status code message } } }"""
    body = f'{{"query": {json.dumps(query)}, "variables": {{"events": {events_json}}}}}'
    response = await http.post(
        "/graphql",
        content=body.encode(),
        headers={"X-API-Key": key, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    assert "errors" not in response.json(), response.text
    return response.json()["data"]["ingestMeterEvents"]  # type: ignore[no-any-return]


def _event_json(customer: str, value_json: str, millis: int) -> str:
    return (
        f'{{"meterApiName": "calls", "customerId": "{customer}", "meterValue": {value_json}, '
        f'"meterTimeInMillis": {millis}}}'
    )


async def _totals(gql: GraphQLClient, start: datetime, ready: Any) -> dict[str, str]:
    variables = {
        "input": {
            "meterApiName": "calls",
            "timeGroupingInterval": "DAY",
            "startTime": start.isoformat(),
            "endTime": (start + timedelta(days=2)).isoformat(),
            "groupBy": ["customerId"],
        }
    }
    deadline = time.monotonic() + 20
    while True:
        groups = (await gql(USAGE, variables))["usage"]["groups"]
        totals = {g["group"]["customerId"]: g["total"] for g in groups}
        if ready(totals):
            return totals
        assert time.monotonic() < deadline, f"usage never became ready: {totals}"
        await asyncio.sleep(0.1)


async def test_meter_values_are_exact_from_ingest_to_usage(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "calls")
    millis = _millis()
    events = [
        _event_json("number", str(BIG), millis),
        _event_json("string", f'"{BIG}"', millis + 1),
        _event_json("tenths", "0.1", millis + 2),
        _event_json("tenths", "0.2", millis + 3),
        _event_json("long", "1234567.123456789012", millis + 4),  # 19 digits: no double has it
    ]
    report = await _ingest_raw(http, account.admin_key, "[" + ", ".join(events) + "]")
    assert report["accepted"] == 5, report
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    expected = {
        "number": str(BIG),
        "string": str(BIG),
        "tenths": "0.3",
        "long": "1234567.123456789012",
    }
    totals = await _totals(gql, day, lambda t: set(t) == set(expected))
    assert {k: D(v) for k, v in totals.items()} == {k: D(v) for k, v in expected.items()}
    assert totals["number"] == str(BIG) and totals["string"] == str(BIG)

    body = {
        "meterApiName": "calls",
        "timeGroupingInterval": "DAY",
        "timeRange": {
            "startTimeInSeconds": int(day.timestamp()),
            "endTimeInSeconds": int((day + timedelta(days=2)).timestamp()),
        },
        "groupBy": ["customerId"],
    }
    response = await http.post(
        "/usage", content=json.dumps(body), headers={"X-API-KEY": account.admin_key}
    )
    assert response.status_code == 200, response.text
    raw = response.content
    assert b'"groupValue":9007199254740993' in raw, raw
    assert b'"groupValue":0.3,' in raw and b"0.30000000000000004" not in raw, raw
    assert b'"groupValue":1234567.123456789012' in raw, raw
    # The bytes are JSON a strict reader takes, and read exactly they are those numbers.
    decoded = json.loads(raw, parse_float=Decimal)
    values = {
        m["group"]["groupInfo"]["customerId"]: m["groupValue"] for m in decoded["clientMeters"]
    }
    assert values == {"number": BIG, "string": BIG, "tenths": D("0.3"), "long": D(expected["long"])}


async def test_the_usage_api_answers_exact_json_numbers(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount
) -> None:
    """Fed through the Amberflo wire format, which reads numbers exactly: the answer's bytes
    must carry the same digits (float() wrote 9007199254740992 and 0.30000000000000004)."""
    await create_meter(gql, "calls")
    millis = _millis()
    body = (
        "["
        + ", ".join(
            [
                _event_json("big", str(BIG), millis),
                _event_json("tenths", "0.1", millis + 1),
                _event_json("tenths", "0.2", millis + 2),
            ]
        )
        + "]"
    )
    ingested = await http.post("/ingest", content=body, headers={"X-API-KEY": account.admin_key})
    assert ingested.status_code == 200, ingested.text
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    await _totals(gql, day, lambda t: set(t) == {"big", "tenths"})
    query = {
        "meterApiName": "calls",
        "timeGroupingInterval": "DAY",
        "timeRange": {
            "startTimeInSeconds": int(day.timestamp()),
            "endTimeInSeconds": int((day + timedelta(days=2)).timestamp()),
        },
        "groupBy": ["customerId"],
        "take": {"limit": 10, "isAscending": False},
    }
    response = await http.post(
        "/usage", content=json.dumps(query), headers={"X-API-KEY": account.admin_key}
    )
    assert response.status_code == 200, response.text
    assert b'"groupValue":9007199254740993,' in response.content, response.content
    assert b'"value":9007199254740993,' in response.content, response.content
    assert b'"groupValue":0.3,' in response.content, response.content
    assert b"0.30000000000000004" not in response.content


async def test_a_bad_meter_value_rejects_its_event_alone(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "calls")
    millis = _millis()
    values = ['"2.5"', '"NaN"', '"Infinity"', '"-Infinity"', '"1e400"', '"lots"', "7", "1e-400"]
    report = await _ingest_raw(
        http,
        account.admin_key,
        "[" + ", ".join(_event_json("c", v, millis + i) for i, v in enumerate(values)) + "]",
    )
    assert (report["accepted"], report["rejected"]) == (2, 6), report
    codes = [(o["status"], o["code"]) for o in report["outcomes"]]
    assert codes == [
        ("ACCEPTED", None),
        ("REJECTED", "NON_FINITE_VALUE"),
        ("REJECTED", "NON_FINITE_VALUE"),
        ("REJECTED", "NON_FINITE_VALUE"),
        ("REJECTED", "INVALID_VALUE"),
        ("REJECTED", "INVALID_VALUE"),
        ("ACCEPTED", None),
        ("REJECTED", "INVALID_VALUE"),  # a JSON number a double would flush to 0, read exactly
    ]
    assert "'lots' is not a number" in report["outcomes"][5]["message"]
    # Existing clients sending plain JSON numbers through a typed client keep working.
    sent = await ingest(
        gql,
        [
            {
                "meterApiName": "calls",
                "customerId": "c",
                "meterValue": 1.25,
                "meterTimeInMillis": millis + 100,
            }
        ],
    )
    assert sent["accepted"] == 1, sent


async def test_a_bad_event_time_rejects_its_event_alone(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount
) -> None:
    """meterTimeInMillis is a Decimal, so any JSON number reaches the event's own checks: an
    integer past 64 bits (which a GraphQL Float refuses for the whole request) rejects its
    event alone."""
    await create_meter(gql, "calls")
    millis = _millis()
    times = [
        str(millis),
        str(2**64 + 1),
        "1" + "0" * 300,
        "1.5",
        '"soon"',
        f'"{millis + 1}"',
        str(millis + 2),
    ]
    events = ", ".join(
        _event_json("c", "1", 0).replace('"meterTimeInMillis": 0', f'"meterTimeInMillis": {t}')
        for t in times
    )
    report = await _ingest_raw(http, account.admin_key, f"[{events}]")
    codes = [(o["status"], o["code"]) for o in report["outcomes"]]
    assert codes == [
        ("ACCEPTED", None),
        ("REJECTED", "INVALID_TIME"),
        ("REJECTED", "INVALID_TIME"),
        ("REJECTED", "INVALID_TIME"),
        ("REJECTED", "INVALID_TIME"),
        ("ACCEPTED", None),
        ("ACCEPTED", None),
    ], report
    assert "after the year 9999" in report["outcomes"][1]["message"]
    assert "'soon' is not a number" in report["outcomes"][4]["message"]


# Date-times without an offset ----------------------------------------------------------------


def _bad_input(errors: list[dict[str, Any]]) -> None:
    assert errors[0]["extensions"]["code"] == "BAD_INPUT", errors
    assert "offset" in errors[0]["message"], errors


async def test_a_date_time_without_an_offset_is_refused_everywhere(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount
) -> None:
    await create_meter(gql, "calls")
    plan = await _active_plan(gql)
    await gql(CUSTOMER, {"c": "naive"})
    naive = "2026-01-10T13:37:00"
    _bad_input(
        await gql.errors(
            ASSIGN, {"input": {"customerId": "naive", "planId": plan, "startTime": naive}}
        )
    )
    _bad_input(  # the same as a literal in the document
        await gql.errors(
            f'mutation {{ assignPricingPlan(input: {{customerId: "naive", planId: "{plan}", '
            f'startTime: "{naive}"}}) {{ __typename }} }}'
        )
    )
    usage = {"meterApiName": "calls", "timeGroupingInterval": "DAY"}
    _bad_input(
        await gql.errors(
            USAGE, {"input": {**usage, "startTime": naive, "endTime": "2026-01-11T00:00:00Z"}}
        )
    )
    _bad_input(
        await gql.errors(
            USAGE, {"input": {**usage, "startTime": "2026-01-01T00:00:00Z", "endTime": naive}}
        )
    )
    _bad_input(
        await gql.errors(
            GRANT,
            {"input": {"customerId": "naive", "amount": "5", "expiresAt": "2099-01-01T00:00"}},
        )
    )
    _bad_input(
        await gql.errors(
            "query($f: MeterEventFilter) { meterEvents(filter: $f) { edges { cursor } } }",
            {"f": {"startTime": naive}},
        )
    )
    # With an offset, the same inputs work, and +01:00 is the instant it names.
    done = await gql(
        ASSIGN,
        {
            "input": {
                "customerId": "naive",
                "planId": plan,
                "startTime": "2026-01-10T14:37:00+01:00",
            }
        },
    )
    assert done["assignPricingPlan"]["__typename"] == "PlanAssignment", done
    # The REST usage API takes epoch seconds only: a date-time text there is a 400.
    response = await http.post(
        "/usage",
        content=json.dumps(
            {
                "meterApiName": "calls",
                "timeGroupingInterval": "DAY",
                "timeRange": {"startTimeInSeconds": naive},
            }
        ),
        headers={"X-API-KEY": account.admin_key},
    )
    assert response.status_code == 400, response.text
