"""No statement of a request, or of an account's own jobs, reads or writes across accounts:
each one that touches an account's table names `account_id`. That is what keeps every query
routable to one node when the schema is distributed by account (docs/scaling.md), and what
keeps one tenant's data out of another's answers.

A day of an account's life runs here — meters, a plan, customers, ingest over REST and GraphQL,
the rollup, re-rating, the dashboard page, invoices, usage, events, alerts, webhooks, wallets —
through the app in this process (real HTTP requests over httpx's ASGI transport) and the
worker's services, and every SQL statement is captured with an SQLAlchemy hook. The few
statements that legitimately span accounts are named below with their reason."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from meterflow.db import SessionFactory, unit_of_work
from meterflow.services import invoice_rating, rollups
from tests.client import GraphQLClient
from tests.conftest import in_process_app, make_account

# Statements that span accounts on purpose.
CROSS_ACCOUNT = {
    # A credential is found by its hash before its account is known.
    "api key lookup": re.compile(r"FROM api_keys\s+WHERE api_keys\.key_hash"),
}


@pytest.fixture
async def app_client(
    database_url: str, redis_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Any]]:
    async with in_process_app(database_url, redis_url, lifespan=True) as pair:
        yield pair


async def tenant_tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT DISTINCT c.relname FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_attribute a ON a.attrelid = c.oid "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') "
                "AND a.attname = 'account_id' AND NOT c.relispartition"
            )
        )
        return {row[0] for row in rows}


async def test_every_statement_of_an_accounts_day_is_scoped_to_it(
    app_client: tuple[httpx.AsyncClient, Any],
    engine: AsyncEngine,
    session_factory: SessionFactory,
) -> None:
    http, app = app_client
    tables = await tenant_tables(engine)
    assert {"meter_events", "customers", "invoices", "usage_rollups"} <= tables
    statements: list[str] = []

    def capture(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    engines = [app.state.engine.sync_engine, engine.sync_engine]
    for each in engines:
        event.listen(each, "before_cursor_execute", capture)
    try:
        account = await make_account(session_factory, name="scoped")
        gql = GraphQLClient(http, account.admin_key)
        await day_of(gql, http, account.admin_key)
        async with unit_of_work(session_factory) as session:
            while (await rollups.rollup_account(session, account_id=account.account_id)).more:
                pass
        async with unit_of_work(session_factory) as session:
            await invoice_rating.rerate_customers(
                session,
                account_id=account.account_id,
                customer_ids=["t1", "t2"],
                now=datetime.now(UTC),
            )
        await dashboard(gql)
    finally:
        for each in engines:
            event.remove(each, "before_cursor_execute", capture)

    named = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+(\w+)", re.I)
    # A condition on the account (`x.account_id = $1`, a join on it, `IN`), or rows written
    # with their account — not merely the column in a SELECT list.
    scoped = re.compile(
        r"account_id\s*(?:=|IN\b)|\bINSERT INTO \w+\s*\((?:[^)]*[\s,(])?account_id\b", re.I
    )
    checked = 0
    for statement in statements:
        touched = {t for t in named.findall(statement) if t in tables}
        if not touched or any(p.search(statement) for p in CROSS_ACCOUNT.values()):
            continue
        checked += 1
        assert scoped.search(statement), (
            f"{sorted(touched)} not scoped to one account:\n{statement}"
        )
    assert checked >= 100, checked  # the day did happen


async def day_of(gql: GraphQLClient, http: httpx.AsyncClient, key: str) -> None:
    await gql(
        """mutation { createMeter(input: {meterApiName: "calls", meterType: SUM,
        dimensions: ["region"]}) { __typename } }"""
    )
    await gql('mutation { activateMeter(meterApiName: "calls") { __typename } }')
    plan = await gql(
        """mutation { createPricingPlan(input: {name: "API", billingPeriod: {interval: MONTH},
        items: [{meterApiName: "calls", includedUnits: "10",
                 priceModel: {type: "per_unit", unitPrice: "0.5"}}]}) {
          ... on PricingPlan { id } } }"""
    )
    plan_id = plan["createPricingPlan"]["id"]
    await gql(f'mutation {{ activatePricingPlan(id: "{plan_id}") {{ __typename }} }}')
    for customer in ("t1", "t2"):
        await gql(
            f'mutation {{ createCustomer(input: {{customerId: "{customer}"}}) {{ __typename }} }}'
        )
        await gql(
            f'mutation {{ assignPricingPlan(input: {{customerId: "{customer}", '
            f'planId: "{plan_id}"}}) {{ __typename }} }}'
        )
    millis = int(time.time() * 1000) - 1000
    response = await http.post(
        "/ingest",
        json=[
            {
                "meterApiName": "calls",
                "customerId": "t1",
                "meterValue": 25,
                "meterTimeInMillis": millis,
                "uniqueId": str(uuid.uuid4()),
                "dimensions": {"region": "eu"},
            }
        ],
        headers={"X-API-Key": key},
    )
    assert response.status_code == 200, response.text
    await gql(
        """mutation($e: [MeterEventInput!]!) { ingestMeterEvents(events: $e) { accepted } }""",
        {
            "e": [
                {
                    "meterApiName": "calls",
                    "customerId": "t2",
                    "meterValue": "3",
                    "meterTimeInMillis": str(millis),
                }
            ]
        },
    )
    await gql(
        """mutation { grantCredits(input: {customerId: "t1", amount: "2.00", currency: "USD"})
        { __typename } }"""
    )
    await gql(
        """mutation { createAlertRule(input: {name: "big", subject: USAGE,
        condition: GREATER_THAN, threshold: "1", range: DAY, meterApiName: "calls",
        channels: []})
        { __typename } }"""
    )


async def dashboard(gql: GraphQLClient) -> None:
    await gql(
        """{ customers(first: 10) { edges { node { customerId
            currentUsage { value } currentInvoice { total payment { status } }
            wallet { balance ledger(first: 5) { edges { node { amount } } } }
            plan { name items { meterApiName } } planAssignments { planId } } } }
          invoices(filter: {status: OPEN}, orderBy: {field: TOTAL, direction: DESC}, first: 5)
            { edges { node { total } } }
          meters { meterApiName } pricingPlans { name }
          meterEvents(first: 5) { edges { node { customerId payload } } }
          alertRules { name } alertEvents { rule { name } }
          webhookEndpoints { id } notices { kind }
          currentInvoice(customerId: "t1") { total }
          wallet(customerId: "t1") { balance } }"""
    )
    now = datetime.now(UTC)
    await gql(
        """query($s: DateTime!, $e: DateTime!) { usage(input: {meterApiName: "calls",
        timeGroupingInterval: DAY, startTime: $s, endTime: $e, groupBy: ["customerId"]})
        { groups { total } } }""",
        {"s": now.replace(day=1, hour=0, minute=0).isoformat(), "e": now.isoformat()},
    )
