"""The dashboard read path: a page of customers with every nested field costs the same number
of SQL statements at 10 customers as at 500 (DataLoaders batch each field for the page), and
every figure on it equals what the single-customer queries say.

Statements are counted by an SQLAlchemy event hook on the app's own engine, so the app runs
in this process (httpx's ASGI transport: real HTTP requests, no socket)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from meterflow.db import SessionFactory, unit_of_work
from meterflow.models import MeterType
from meterflow.services import (
    accounts,
    customers,
    ingestion,
    invoice_rating,
    meters,
    rollups,
    wallets,
)
from meterflow.services.meters import MeterSpec
from tests.billing_setup import per_unit_account, put_on_plan
from tests.conftest import in_process_app

CUSTOMERS = 500
PAGE = """query($n: Int!) { customers(first: $n) { edges { node {
    customerId
    currentUsage { meterApiName value }
    currentInvoice { id total lines { amount } payment { status } }
    wallet { currency balance autoTopUp { threshold }
      ledger(first: 5) { edges { node { kind amount balanceAfter } } pageInfo { hasNextPage } } }
    plan { name currency items { meterApiName } }
    planAssignments { planId startTime endTime }
} } } }"""


@pytest.fixture(scope="module")
async def seeded(session_factory: SessionFactory) -> tuple[uuid.UUID, str]:
    """500 customers on a per-unit plan (1.00 a call); customer i made i % 7 calls, and every
    third one has 2.00 of credits."""
    now = datetime.now(UTC)
    ids = [f"c{i:03d}" for i in range(CUSTOMERS)]
    async with unit_of_work(session_factory) as session:
        account_id, plan_id = await per_unit_account(
            session, name="read path", unit_price="1", now=now
        )
        await put_on_plan(
            session, account_id=account_id, plan_id=plan_id, customer_ids=ids, start=None, now=now
        )
        for i, customer in enumerate(ids):
            if i % 3 == 0:
                await wallets.grant(
                    session,
                    account_id=account_id,
                    customer_id=customer,
                    amount=Decimal(2),
                    currency="USD",
                    priority=1,
                    expires_at=None,
                    reason=None,
                    purchased=True,
                    now=now,
                )
        issued = await accounts.issue_api_key(
            session, account_id=account_id, name="k", scope=accounts.ApiKeyScope.ADMIN
        )
    records = []
    millis = int((now - timedelta(seconds=5)).timestamp() * 1000)
    for i, customer in enumerate(ids):
        if i % 7:
            record = {
                "meterApiName": "calls",
                "customerId": customer,
                "meterValue": i % 7,
                "meterTimeInMillis": millis,
                "uniqueId": customer,
            }
            records.append(ingestion.RawRecord(record, json.dumps(record)))
    async with unit_of_work(session_factory) as session:
        await ingestion.ingest(session, account_id=account_id, records=records, now=now)
    async with unit_of_work(session_factory) as session:
        await rollups.rollup_account(session, account_id=account_id)
        await invoice_rating.rerate_customers(
            session, account_id=account_id, customer_ids=ids, now=datetime.now(UTC)
        )
    return account_id, issued.secret


@pytest.fixture(scope="module")
async def client(database_url: str, redis_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with in_process_app(database_url, redis_url) as pair:
        yield pair


async def run(
    client: tuple[httpx.AsyncClient, Any], key: str, query: str, variables: dict[str, Any]
) -> tuple[dict[str, Any], int]:
    """The answer's data and how many SQL statements the app ran for it."""
    http, app = client
    statements = 0

    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        response = await http.post(
            "/graphql", json={"query": query, "variables": variables}, headers={"X-API-Key": key}
        )
    finally:
        event.remove(engine, "before_cursor_execute", count)
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"], statements


async def test_a_page_costs_the_same_statements_at_10_and_500_customers(
    seeded: tuple[uuid.UUID, str], client: tuple[httpx.AsyncClient, Any]
) -> None:
    _, key = seeded
    await run(client, key, PAGE, {"n": 2})  # warm: connections, prepared statements
    small, at_10 = await run(client, key, PAGE, {"n": 10})
    large, at_500 = await run(client, key, PAGE, {"n": CUSTOMERS})
    assert len(large["customers"]["edges"]) == CUSTOMERS
    assert len(small["customers"]["edges"]) == 10
    print(f"statements: first 10 → {at_10}, first 500 → {at_500}")
    assert at_10 == at_500
    assert at_500 <= 20


async def test_every_figure_on_the_page_is_the_single_customer_figure(
    seeded: tuple[uuid.UUID, str], client: tuple[httpx.AsyncClient, Any]
) -> None:
    _, key = seeded
    page, _ = await run(client, key, PAGE, {"n": CUSTOMERS})
    nodes = {e["node"]["customerId"]: e["node"] for e in page["customers"]["edges"]}
    for i in range(CUSTOMERS):
        node = nodes[f"c{i:03d}"]
        calls = i % 7
        credits = Decimal(2) if i % 3 == 0 else Decimal(0)
        drawn = min(credits, Decimal(calls))
        # By hand: 1.00 a call, credits drawn first.
        assert node["currentUsage"] == [{"meterApiName": "calls", "value": str(calls)}]
        assert Decimal(node["currentInvoice"]["total"]) == Decimal(calls) - drawn, node
        ledger = node["wallet"].pop("ledger")
        assert node["wallet"] == {
            "currency": "USD",
            "balance": f"{credits - drawn:.2f}",
            "autoTopUp": None,
        }
        # By hand: a GRANT line, then the invoice's CONSUMPTION of it (when it drew any).
        expected = []
        if credits:
            expected.append({"kind": "GRANT", "amount": "2.00", "balanceAfter": "2.00"})
        if drawn:
            expected.append(
                {
                    "kind": "CONSUMPTION",
                    "amount": f"{-drawn:.2f}",
                    "balanceAfter": f"{credits - drawn:.2f}",
                }
            )
        assert [e["node"] for e in ledger["edges"]] == expected, node["customerId"]
        assert ledger["pageInfo"] == {"hasNextPage": False}
        assert node["plan"]["name"] == "p" and node["plan"]["items"] == [{"meterApiName": "calls"}]
        assert len(node["planAssignments"]) == 1 and node["planAssignments"][0]["endTime"] is None
        assert node["currentInvoice"]["payment"] is None
    # The same figures through the one-customer queries.
    for customer in ("c000", "c006", "c013", "c499"):
        single, _ = await run(
            client,
            key,
            """query($c: String!) { currentInvoice(customerId: $c) { id total }
            wallet(customerId: $c) { balance } }""",
            {"c": customer},
        )
        assert single["currentInvoice"]["id"] == nodes[customer]["currentInvoice"]["id"]
        assert single["currentInvoice"]["total"] == nodes[customer]["currentInvoice"]["total"]
        assert single["wallet"]["balance"] == nodes[customer]["wallet"]["balance"]


MIXED = [  # (meter, type, aggregation dimension)
    ("calls", "SUM", None),
    ("requests", "COUNT", None),
    ("peak", "MAX", None),
    ("users", "UNIQUE_COUNT", "user"),
    ("level", "LATEST", None),
]


async def test_current_usage_of_every_meter_type_equals_the_raw_events(
    session_factory: SessionFactory, client: tuple[httpx.AsyncClient, Any]
) -> None:
    """The page reads SUM, COUNT and MAX meters in one statement and the others one by one;
    each customer's figure must still be what the raw events say, and what the usage query
    says for that meter — also through a fragment, beside an aliased wallet in another
    currency (fields the page does not read ahead)."""
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    async with unit_of_work(session_factory) as session:
        account = await accounts.create_account(session, name="mixed meters")
        for name, kind, dimension in MIXED:
            await meters.create_meter(
                session,
                account_id=account.id,
                meter_api_name=name,
                spec=MeterSpec(
                    name,
                    MeterType(kind),
                    dimensions=(dimension,) if dimension else (),
                    aggregation_dimension=dimension,
                ),
            )
        key = (
            await accounts.issue_api_key(
                session, account_id=account.id, name="k", scope=accounts.ApiKeyScope.ADMIN
            )
        ).secret
        customer_ids = [f"m{i:02d}" for i in range(12)]
        for customer in customer_ids:
            await customers.create_customer(
                session, account_id=account.id, customer_id=customer, now=now
            )
    events: list[dict[str, Any]] = []
    for i, customer in enumerate(customer_ids):
        for j in range(i % 4):  # m00, m04, m08 have no usage at all
            at = max(month_start, now - timedelta(seconds=60 - j))
            for name, _, dimension in MIXED:
                event = {
                    "meterApiName": name,
                    "customerId": customer,
                    "meterValue": str(Decimal(i) + Decimal(j) / 4),
                    "meterTimeInMillis": int(at.timestamp() * 1000) + j,
                    "uniqueId": f"{customer}-{name}-{j}",
                }
                if dimension:
                    event["dimensions"] = {dimension: f"u{(i + j) % 3}"}
                events.append(event)
    async with unit_of_work(session_factory) as session:
        await ingestion.ingest(
            session,
            account_id=account.id,
            records=[ingestion.RawRecord(e, json.dumps(e)) for e in events],
            now=now,
        )
    async with unit_of_work(session_factory) as session:
        while (await rollups.rollup_account(session, account_id=account.id)).more:
            pass

    def by_hand(customer: str, name: str) -> Decimal:
        mine = [e for e in events if e["customerId"] == customer and e["meterApiName"] == name]
        values = [Decimal(e["meterValue"]) for e in mine]
        if not mine:
            return Decimal(0)
        return {
            "calls": sum(values, Decimal(0)),
            "requests": Decimal(len(values)),
            "peak": max(values),
            "users": Decimal(len({e["dimensions"]["user"] for e in mine if "dimensions" in e})),
            "level": Decimal(max(mine, key=lambda e: e["meterTimeInMillis"])["meterValue"]),
        }[name]

    page, _ = await run(
        client,
        key,
        """fragment Usage on Customer { currentUsage { meterApiName value } }
        { customers(first: 50) { edges { node { customerId ...Usage
            eur: wallet(currency: "EUR") { currency balance } } } } }""",
        {},
    )
    nodes = {e["node"]["customerId"]: e["node"] for e in page["customers"]["edges"]}
    assert sorted(nodes) == customer_ids
    month = now.strftime("%Y-%m-01T00:00:00Z")
    for name, _, _ in MIXED:
        answer, _ = await run(
            client,
            key,
            """query($m: String!, $s: DateTime!, $e: DateTime!) { usage(input: {
                meterApiName: $m, timeGroupingInterval: MONTH, startTime: $s, endTime: $e,
                groupBy: ["customerId"] }) { groups { group total } } }""",
            {"m": name, "s": month, "e": (now + timedelta(hours=1)).isoformat()},
        )
        queried = {g["group"]["customerId"]: g["total"] for g in answer["usage"]["groups"]}
        for customer in customer_ids:
            shown = {u["meterApiName"]: u["value"] for u in nodes[customer]["currentUsage"]}
            assert Decimal(shown[name]) == by_hand(customer, name), (customer, name)
            if customer in queried:
                assert shown[name] == queried[customer], (customer, name)
    for customer in customer_ids:
        assert nodes[customer]["eur"] == {"currency": "EUR", "balance": "0.00"}
