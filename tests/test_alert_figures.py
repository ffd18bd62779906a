"""What alert rules compare, against the real database: a BALANCE rule reads its wallet's
currency, COST with PERCENT_CHANGE compares a billing period's invoice with the previous one
(rules with no such figure are refused), the COST query holds past PostgreSQL's 32,767 bind
parameters, and period ends are judged one account at a time.

Figures are by hand: invoices are per-unit at 1.00, so a period's cost is its units."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from redis.asyncio import Redis
from sqlalchemy import text

from meterflow.db import unit_of_work
from meterflow.errors import ValidationError
from meterflow.jobs import JobQueue
from meterflow.migrations import upgrade
from meterflow.secretbox import SecretBox
from meterflow.services import (
    accounts,
    alerts,
    customers,
    ingestion,
    invoice_rating,
    rollups,
    wallets,
)
from meterflow.services.timebuckets import Grouping, floor
from meterflow.workers import rollup
from meterflow.workers.alerts import envelope
from tests.billing_setup import per_unit_account, put_on_plan
from tests.client import GraphQLClient
from tests.conftest import TEST_SECRET_KEY, _admin_execute
from tests.services import TestServices
from tests.test_alert_targets import _rows

BOX = SecretBox(TEST_SECRET_KEY)
# A fixed clock: services take `now`, so periods are known to the test.
SEP, OCT, NOV = (datetime(2026, m, 1, tzinfo=UTC) for m in (9, 10, 11))
MID_OCT = datetime(2026, 10, 15, 12, tzinfo=UTC)
CREATE = """mutation($input: CreateAlertRuleInput!) { createAlertRule(input: $input) {
    __typename ... on AlertRule { currency } ... on Error { code message } } }"""


async def _account_on_plan(
    factory: Any, currency: str, customer_ids: tuple[str, ...], start: datetime
) -> uuid.UUID:
    """An account with meter `calls` billed monthly at 1.00 per call in `currency`."""
    async with unit_of_work(factory) as session:
        account_id, plan_id = await per_unit_account(
            session, name="alert figures", unit_price="1", currency=currency, now=start
        )
        await put_on_plan(
            session,
            account_id=account_id,
            plan_id=plan_id,
            customer_ids=customer_ids,
            start=start,
            now=start,
        )
    return account_id


async def _rule(factory: Any, account_id: uuid.UUID, **spec: Any) -> None:
    spec = {"customer_id": None, "range": "MONTH", **spec}
    spec["threshold"] = Decimal(spec["threshold"])
    async with unit_of_work(factory) as session:
        await alerts.create_rule(
            session, account_id=account_id, spec=alerts.RuleSpec(**spec), now=MID_OCT, box=BOX
        )


async def _use(factory: Any, account_id: uuid.UUID, *uses: tuple[str, int, datetime]) -> None:
    """Ingest calls, roll them up and rate every period up to MID_OCT."""
    records = [
        ingestion.RawRecord(d, json.dumps(d))
        for d in (
            {
                "meterApiName": "calls",
                "customerId": customer,
                "meterValue": value,
                "uniqueId": str(uuid.uuid4()),
                "meterTimeInMillis": int(at.timestamp() * 1000),
            }
            for customer, value, at in uses
        )
    ]
    async with unit_of_work(factory) as session:
        await ingestion.ingest(session, account_id=account_id, records=records, now=MID_OCT)
    async with unit_of_work(factory) as session:
        await rollups.rollup_account(session, account_id=account_id)
        await invoice_rating.rerate_customers(
            session,
            account_id=account_id,
            customer_ids=sorted({u[0] for u in uses}),
            now=MID_OCT,
        )


async def test_balance_rules_read_the_wallet_in_their_currency(session_factory: Any) -> None:
    account = await _account_on_plan(session_factory, "EUR", ("eu",), OCT)
    async with unit_of_work(session_factory) as session:
        for amount, currency, money, ratio in (
            ("4", "EUR", None, None),
            ("100", "USD", None, None),
            ("300", "CREDITS", "EUR", Decimal("0.01")),
        ):
            await wallets.grant(
                session,
                account_id=account,
                customer_id="eu",
                amount=Decimal(amount),
                currency=currency,
                priority=1,
                expires_at=None,
                reason=None,
                purchased=True,
                now=MID_OCT,
                money_currency=money,
                ratio=ratio,
            )
    # No currency named: the customer's plan's (EUR). 4 EUR < 5 fires; the 100 USD would not.
    await _rule(
        session_factory,
        account,
        name="eur low",
        subject="BALANCE",
        condition="LESS_THAN",
        threshold="5",
        customer_id="eu",
    )
    await _rule(
        session_factory,
        account,
        name="credits low",
        subject="BALANCE",
        condition="LESS_THAN",
        threshold="500",
        currency="credits",
    )
    await _rule(
        session_factory,
        account,
        name="usd low",
        subject="BALANCE",
        condition="LESS_THAN",
        threshold="50",
        currency="USD",
    )
    async with unit_of_work(session_factory) as session:
        fired = await alerts.evaluate(session, account_id=account, customers=["eu"], now=MID_OCT)
        again = await alerts.evaluate(session, account_id=account, customers=["eu"], now=MID_OCT)
        rules = {r.id: r for r in await alerts.list_rules(session, account_id=account)}
    assert again == []
    by_rule = {e.message.split(":")[0]: e for e in fired}
    assert sorted(by_rule) == ["credits low", "eur low"]
    eur, credits = by_rule["eur low"], by_rule["credits low"]
    assert (eur.value, eur.currency) == (Decimal(4), "EUR")
    assert eur.message == "eur low: eu's prepaid balance this month is 4.00 EUR, below 5.00 EUR"
    assert (credits.value, credits.currency) == (Decimal(300), "CREDITS")
    assert "300.00 CREDITS, below 500.00 CREDITS" in credits.message
    data = envelope(eur, rules[eur.rule_id])["data"]
    assert (data["value"], data["currency"]) == ("4.00", "EUR")  # money at its minor unit
    assert rules[eur.rule_id].currency == "EUR"


async def test_cost_percent_change_compares_with_the_previous_invoice(
    session_factory: Any,
) -> None:
    account = await _account_on_plan(session_factory, "USD", ("grower", "shrinker"), SEP)
    # By hand at 1.00 a call: grower 100.00 in September, 150.00 in October (+50%);
    # shrinker 200.00 then 150.00 (-25%).
    await _use(
        session_factory,
        account,
        ("grower", 100, SEP + timedelta(days=3)),
        ("grower", 150, MID_OCT - timedelta(hours=1)),
        ("shrinker", 200, SEP + timedelta(days=4)),
        ("shrinker", 150, MID_OCT - timedelta(hours=2)),
    )
    async with unit_of_work(session_factory) as session:
        # September closed: its invoices are final (the figure is the same whatever the status).
        await session.execute(
            text(
                "UPDATE invoices SET status = 'FINALIZED', finalized_at = :t "
                "WHERE account_id = :a AND period_end <= :t"
            ),
            {"a": account, "t": OCT},
        )
    for name, threshold in (("up 40", "40"), ("up 60", "60"), ("down 20", "-20")):
        await _rule(
            session_factory,
            account,
            name=name,
            subject="COST",
            condition="PERCENT_CHANGE",
            threshold=threshold,
        )
    async with unit_of_work(session_factory) as session:
        fired = await alerts.evaluate(
            session, account_id=account, customers=["grower", "shrinker"], now=MID_OCT
        )
        again = await alerts.evaluate(
            session, account_id=account, customers=["grower", "shrinker"], now=MID_OCT
        )
    assert again == []
    # Mid-period: +50% crosses 40, not 60; drops wait for the period to end.
    assert [(e.message.split(":")[0], e.customer_id) for e in fired] == [("up 40", "grower")]
    assert (fired[0].value, fired[0].currency, fired[0].period_start) == (
        Decimal("150.00"),
        "USD",
        OCT,
    )
    assert fired[0].message == (
        "up 40: grower's cost this month is 150.00 USD (+50.0% vs 100.00 USD the previous one)"
    )
    async with unit_of_work(session_factory) as session:
        ended = await alerts.evaluate_period_ends(
            session, account_id=account, now=NOV + timedelta(hours=1)
        )
        ended_again = await alerts.evaluate_period_ends(
            session, account_id=account, now=NOV + timedelta(hours=2)
        )
    # October ended: the drop of shrinker (-25%) fires; grower's +50% fired already this period.
    assert [(e.message.split(":")[0], e.customer_id) for e in ended] == [("down 20", "shrinker")]
    assert "(-25.0% vs 200.00 USD the previous one)" in ended[0].message
    assert ended_again == []


@pytest.mark.parametrize(
    ("subject", "range", "field", "says"),
    [
        ("BALANCE", "MONTH", "condition", "no previous period's balance"),
        ("COST", "HOUR", "range", "no plan bills by the HOUR"),
        ("COST", "WEEK", "range", "customer 'monthly' is billed every 1 MONTH"),
    ],
)
async def test_percent_change_without_a_previous_figure_is_refused(
    session_factory: Any, subject: str, range: str, field: str, says: str
) -> None:
    account = await _account_on_plan(session_factory, "USD", ("monthly",), OCT)
    with pytest.raises(ValidationError) as refused:
        await _rule(
            session_factory,
            account,
            name="r",
            subject=subject,
            range=range,
            condition="PERCENT_CHANGE",
            threshold="10",
            customer_id="monthly",
        )
    assert refused.value.field == field
    assert says in refused.value.message


async def test_rules_over_the_api_name_their_wallet_or_are_refused(gql: GraphQLClient) -> None:
    base = {"name": "r", "condition": "LESS_THAN", "threshold": "5", "range": "MONTH"}
    base["channels"] = []
    no_plan = await gql(CREATE, {"input": {**base, "subject": "BALANCE"}})
    assert no_plan["createAlertRule"]["__typename"] == "ValidationError"
    assert "names the currency of the wallet" in no_plan["createAlertRule"]["message"]
    named = await gql(CREATE, {"input": {**base, "subject": "BALANCE", "currency": "eur"}})
    assert named["createAlertRule"] == {"__typename": "AlertRule", "currency": "EUR"}
    change = {**base, "subject": "BALANCE", "currency": "EUR", "condition": "PERCENT_CHANGE"}
    refused = await gql(CREATE, {"input": change})
    assert refused["createAlertRule"]["__typename"] == "ValidationError"
    assert refused["createAlertRule"]["code"] == "VALIDATION_ERROR"
    assert "cannot use PERCENT_CHANGE" in refused["createAlertRule"]["message"]
    cost = await gql(CREATE, {"input": {**base, "subject": "COST", "currency": "EUR"}})
    assert "currency is for BALANCE rules" in cost["createAlertRule"]["message"]


MANY = 33_000  # past PostgreSQL's 32,767 bind parameters


async def test_cost_rules_judge_more_customers_than_bind_parameters(
    session_factory: Any,
) -> None:
    """Customers and invoices by SQL: each pays 10.00 a month, c20000 pays 900.00 in October."""
    async with unit_of_work(session_factory) as session:
        account = (await accounts.create_account(session, name="many")).id
        await session.execute(
            text(
                "INSERT INTO customers (account_id, id, customer_id, name, traits, enabled, "
                "created_at, updated_at) SELECT :a, gen_random_uuid(), 'c' || g, 'c' || g, "
                "'{}', true, now(), now() FROM generate_series(1, :n) g"
            ),
            {"a": account, "n": MANY},
        )
        for start, end, status, big in (
            (SEP, OCT, "FINALIZED", Decimal(10)),
            (OCT, NOV, "OPEN", Decimal(900)),
        ):
            await session.execute(
                text(
                    "INSERT INTO invoices (account_id, id, customer_id, plan_id, assignment_id, "
                    "period_start, period_end, status, currency, lines, discounts, subtotal, "
                    "discount, credits_applied, total) SELECT :a, gen_random_uuid(), 'c' || g, "
                    "gen_random_uuid(), gen_random_uuid(), :s, :e, "
                    "CAST(:status AS invoice_status), 'USD', '[]', '[]', "
                    "CASE WHEN g = 20000 THEN :big ELSE 10.00 END, 0, 0, "
                    "CASE WHEN g = 20000 THEN :big ELSE 10.00 END "
                    "FROM generate_series(1, :n) g"
                ),
                {"a": account, "n": MANY, "s": start, "e": end, "status": status, "big": big},
            )
    await _rule(
        session_factory,
        account,
        name="big spender",
        subject="COST",
        condition="GREATER_THAN",
        threshold="500",
    )
    await _rule(
        session_factory,
        account,
        name="jump",
        subject="COST",
        condition="PERCENT_CHANGE",
        threshold="100",
    )
    everyone = [f"c{i}" for i in range(1, MANY + 1)]
    async with unit_of_work(session_factory) as session:
        fired = await alerts.evaluate(session, account_id=account, customers=everyone, now=MID_OCT)
    # GREATER_THAN: 900 > 500. PERCENT_CHANGE: 10 → 900 is +8900%, over 100%.
    assert sorted((e.message.split(":")[0], e.customer_id, e.value) for e in fired) == [
        ("big spender", "c20000", Decimal(900)),
        ("jump", "c20000", Decimal(900)),
    ]
    async with unit_of_work(session_factory) as session:
        assert await alerts.evaluate_period_ends(session, account_id=account, now=NOV) == []


async def test_period_ends_go_account_by_account(
    session_factory: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """One account's failure (a rule row no code can judge) is logged; the others are judged."""
    ended = floor(datetime.now(UTC), Grouping.MONTH)
    last = floor(ended - timedelta(seconds=1), Grouping.MONTH)
    before = floor(last - timedelta(seconds=1), Grouping.MONTH)
    ids = []
    for name in ("broken", "healthy"):
        async with unit_of_work(session_factory) as session:
            account = (await accounts.create_account(session, name=name)).id
            await customers.create_customer(session, account_id=account, customer_id="d", now=ended)
            for start, end, amount in ((before, last, Decimal(100)), (last, ended, Decimal(50))):
                await session.execute(
                    text(
                        "INSERT INTO invoices (account_id, id, customer_id, plan_id, "
                        "assignment_id, period_start, period_end, status, currency, lines, "
                        "discounts, subtotal, discount, credits_applied, total) VALUES (:a, "
                        "gen_random_uuid(), 'd', gen_random_uuid(), gen_random_uuid(), :s, :e, "
                        "'FINALIZED', 'USD', '[]', '[]', :x, 0, 0, :x)"
                    ),
                    {"a": account, "s": start, "e": end, "x": amount},
                )
        await _rule(
            session_factory,
            account,
            name=f"{name} drop",
            subject="COST",
            condition="PERCENT_CHANGE",
            threshold="-40",
        )
        ids.append(account)
    broken, healthy = ids
    async with unit_of_work(session_factory) as session:
        ranges = (
            await session.execute(
                text("SELECT id, range FROM alert_rules WHERE account_id = :a"), {"a": broken}
            )
        ).all()
        await session.execute(
            text("UPDATE alert_rules SET range = 'FORTNIGHT' WHERE account_id = :a"), {"a": broken}
        )
    redis = Redis.from_url(redis_url)
    jobs = JobQueue(redis_url)
    ctx = {"session_factory": session_factory, "jobs": jobs, "redis": redis}
    try:
        with caplog.at_level(logging.ERROR, logger="meterflow.workers.rollup"):
            assert await rollup.alert_period_ends(ctx) >= 1
            failures = [r for r in caplog.records if r.name == "meterflow.workers.rollup"]
            assert await rollup.alert_period_ends(ctx) == 0  # once per period
    finally:
        await jobs.close()
        await redis.aclose()
        # The database is shared with later tests' workers, whose hourly cron would log this
        # account's failure into their output: put the rules back as they were.
        async with unit_of_work(session_factory) as session:
            for rule_id, original in ranges:
                await session.execute(
                    text("UPDATE alert_rules SET range = :r WHERE id = :i"),
                    {"r": original, "i": rule_id},
                )
    assert [str(broken) in r.getMessage() and r.exc_info is not None for r in failures] == [True]
    async with session_factory() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT account_id, customer_id, value FROM alert_events "
                    "WHERE account_id IN (:b, :h)"
                ),
                {"b": broken, "h": healthy},
            )
        ).all()
    # By hand: 100.00 → 50.00 is -50%, past -40%.
    assert [(r.account_id, r.customer_id, r.value) for r in rows] == [(healthy, "d", 50)]


def test_upgrading_gives_balance_rules_the_usd_wallet_they_read(
    test_services: TestServices,
) -> None:
    """Rules stored before 0012 read the USD wallet: they keep it. The ones with no previous
    figure (BALANCE or hourly COST with PERCENT_CHANGE) are disabled."""
    admin, name = test_services.admin_database_url, f"meterflow_test_0011_{os.getpid()}"
    drop = f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
    asyncio.run(_admin_execute(admin, drop, f'CREATE DATABASE "{name}"'))
    url = test_services.database_url(name)
    stored = [  # name, subject, condition, range
        ("low", "BALANCE", "LESS_THAN", "MONTH"),
        ("balance change", "BALANCE", "PERCENT_CHANGE", "MONTH"),
        ("hourly cost change", "COST", "PERCENT_CHANGE", "HOUR"),
        ("monthly cost change", "COST", "PERCENT_CHANGE", "MONTH"),
        ("heavy", "USAGE", "GREATER_THAN", "DAY"),
    ]
    try:
        upgrade(url, "0011")
        account = uuid.uuid4()
        asyncio.run(
            _rows(
                url,
                f"INSERT INTO accounts (id, name, auto_create_customers) "
                f"VALUES ('{account}', 'old', true)",
                *(
                    "INSERT INTO alert_rules (account_id, id, name, subject, condition, "
                    f"threshold, range, channels, enabled) VALUES ('{account}', "
                    f"'{uuid.uuid4()}', '{rule}', '{subject}', '{condition}', 10, '{range}', "
                    "'[]', true)"
                    for rule, subject, condition, range in stored
                ),
            )
        )
        upgrade(url)
        rows = asyncio.run(
            _rows(url, "SELECT name, currency, enabled FROM alert_rules ORDER BY name")
        )
        assert rows == [
            ("balance change", "USD", False),
            ("heavy", None, True),
            ("hourly cost change", None, False),
            ("low", "USD", True),
            ("monthly cost change", None, True),
        ]
    finally:
        asyncio.run(_admin_execute(admin, drop))


async def test_cost_and_balance_rules(session_factory: Any) -> None:
    """COST is the running invoice before credits; BALANCE the prepaid credits left.
    Service-level, so it lives in this module: no live worker here races it to the evaluation."""
    now = datetime.now(UTC)
    async with unit_of_work(session_factory) as session:
        account_id, plan_id = await per_unit_account(
            session, name="cost", unit_price="0.5", now=now
        )
        await put_on_plan(
            session,
            account_id=account_id,
            plan_id=plan_id,
            customer_ids=["spender"],
            start=None,
            now=now,
        )
        await wallets.grant(
            session,
            account_id=account_id,
            customer_id="spender",
            amount=Decimal(2),
            currency="USD",
            priority=1,
            expires_at=None,
            reason=None,
            purchased=True,
            now=now,
        )
        for name, subject, condition, threshold in (
            ("spend over 2.50", "COST", "GREATER_THAN", "2.50"),
            ("credits under 1", "BALANCE", "LESS_THAN", "1"),
        ):
            await alerts.create_rule(
                session,
                account_id=account_id,
                spec=alerts.RuleSpec(
                    name=name,
                    subject=subject,
                    condition=condition,
                    threshold=Decimal(threshold),
                    range="MONTH",
                    customer_id="spender",
                ),
                now=now,
                box=BOX,
            )
    records = [
        ingestion.RawRecord(d, json.dumps(d))
        for d in (
            {
                "meterApiName": "calls",
                "customerId": "spender",
                "meterValue": 6,
                "uniqueId": "x",
                "meterTimeInMillis": int((now - timedelta(seconds=5)).timestamp() * 1000),
            },
        )
    ]
    async with unit_of_work(session_factory) as session:
        await ingestion.ingest(session, account_id=account_id, records=records, now=now)
    async with unit_of_work(session_factory) as session:
        await rollups.rollup_account(session, account_id=account_id)
        await invoice_rating.rerate_customers(
            session, account_id=account_id, customer_ids=["spender"], now=datetime.now(UTC)
        )
    async with unit_of_work(session_factory) as session:
        fired = await alerts.evaluate(
            session, account_id=account_id, customers=["spender"], now=datetime.now(UTC)
        )
        again = await alerts.evaluate(
            session, account_id=account_id, customers=["spender"], now=datetime.now(UTC)
        )
    # By hand: 6 calls at 0.50 = 3.00 of cost (over 2.50); 2.00 of credits all drawn: 0 < 1.
    assert sorted((e.value, e.message.split(":")[0]) for e in fired) == [
        (Decimal(0), "credits under 1"),
        (Decimal("3.00"), "spend over 2.50"),
    ]
    assert again == []
