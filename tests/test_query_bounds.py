"""Queries that could freeze the process: every limit is checked before the work, the worst
allowed query never holds the event loop (measured by /healthz answering alongside it), and
every SQL statement of a request has a statement timeout that becomes a clear error."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from meterflow.db import create_engine
from meterflow.services.usage import MAX_BUCKETS, MAX_VALUES
from tests.client import GraphQLClient, TestAccount
from tests.conftest import TEST_SECRET_KEY, running_server
from tests.helpers import create_meter, ingest

USAGE = """
query($input: UsageQueryInput!) {
  usage(input: $input) {
    intervals
    groups { group total values { start value percentageFromPrevious } }
  }
}"""

NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)


def usage_input(grouping: str, start: str, end: str, **more: Any) -> dict[str, Any]:
    return {
        "meterApiName": "calls",
        "timeGroupingInterval": grouping,
        "startTime": start,
        "endTime": end,
        **more,
    }


async def usage_error(gql: GraphQLClient, variables: dict[str, Any], **kw: Any) -> dict[str, Any]:
    started = time.monotonic()
    response = await gql.post(USAGE, {"input": variables}, **kw)
    elapsed = time.monotonic() - started
    assert response.status_code < 500, response.text
    errors = response.json()["errors"]
    # Refused by arithmetic, before any work: well under a second even on a busy machine.
    assert elapsed < 2, (elapsed, variables)
    return errors[0]  # type: ignore[no-any-return]


async def session_token(gql: GraphQLClient, customer: str) -> str:
    result = await gql(
        """mutation($c: String!) { createCustomerSession(customerId: $c) {
             ... on CustomerSession { token } } }""",
        {"c": customer},
    )
    return result["createCustomerSession"]["token"]  # type: ignore[no-any-return]


@pytest.fixture
async def calls(gql: GraphQLClient) -> None:
    await create_meter(gql, "calls", dimensions=["region"])
    await gql('mutation { createCustomer(input: {customerId: "c0"}) { __typename } }')


# ---------------------------------------------------------------- limits before work


@pytest.mark.parametrize(
    ("grouping", "start", "end", "words"),
    [
        ("HOUR", "0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z", "startTime must lie between"),
        ("HOUR", "1970-01-01T00:00:00Z", "9998-12-31T23:00:00Z", f"limit is {MAX_BUCKETS}"),
        ("MONTH", "9990-01-01T00:00:00Z", "9999-12-31T23:00:00Z", "endTime must lie between"),
        ("MONTH", "9998-01-01T00:00:00Z", "9999-12-31T23:30:00Z", "endTime must lie between"),
        ("WEEK", "9998-01-01T00:00:00Z", "9999-12-31T00:00:00Z", "endTime must lie between"),
        ("DAY", "9998-06-01T00:00:00Z", "9999-12-31T23:59:59Z", "endTime must lie between"),
        ("DAY", "0001-01-01T00:00:00+05:00", "2026-01-01T00:00:00Z", "startTime must lie"),
        ("WEEK", "0001-01-01T00:00:00-05:00", "2026-01-01T00:00:00Z", "startTime must lie"),
        ("MONTH", "1700-01-01T00:00:00Z", "2026-01-01T00:00:00Z", "startTime must lie"),
        ("DAY", "2026-01-01T00:00:00Z", "9999-12-31T23:00:00-05:00", "endTime must lie"),
        ("MONTH", "1970-01-01T00:00:00Z", "2900-01-01T00:00:00Z", f"limit is {MAX_BUCKETS}"),
        ("DAY", "1970-01-01T00:00:00Z", "2026-01-01T00:00:00Z", f"limit is {MAX_BUCKETS}"),
    ],
)
async def test_hostile_ranges_are_refused_at_once(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    calls: None,
    grouping: str,
    start: str,
    end: str,
    words: str,
) -> None:
    error = await usage_error(gql, usage_input(grouping, start, end))
    assert error["extensions"]["code"] == "VALIDATION_ERROR", error
    assert words in error["message"], error
    assert (await http.get("/healthz")).status_code == 200


async def test_a_customer_token_gets_the_same_bounds(gql: GraphQLClient, calls: None) -> None:
    token = await session_token(gql, "c0")
    for variables in (
        usage_input("HOUR", "0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z"),
        usage_input("MONTH", "1700-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        usage_input("HOUR", "2000-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
    ):
        error = await usage_error(gql, variables, key=token)
        assert error["extensions"]["code"] == "VALIDATION_ERROR", error


async def test_time_without_a_zone_is_bad_input_not_a_500(gql: GraphQLClient, calls: None) -> None:
    # Read as UTC or as the server's local time, it could name the wrong hours: refused.
    error = await usage_error(
        gql, usage_input("DAY", "2026-01-01T00:00:00", "2026-01-03T00:00:00Z")
    )
    assert error["extensions"]["code"] == "BAD_INPUT", error
    assert "offset" in error["message"], error
    result = await gql(
        USAGE, {"input": usage_input("DAY", "2026-01-01T01:00:00+01:00", "2026-01-03T00:00:00Z")}
    )
    assert result["usage"]["intervals"] == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-02T00:00:00+00:00",
    ]


@pytest.mark.parametrize(
    ("more", "code", "words"),
    [
        ({"groupBy": ["region"] * 11}, "VALIDATION_ERROR", "groupBy takes at most"),
        (
            {"filter": {f"k{i}": ["x"] for i in range(21)}},
            "VALIDATION_ERROR",
            "filter takes at most",
        ),
        (
            {"filter": {"customerId": [str(i) for i in range(10_001)]}},
            "VALIDATION_ERROR",
            "the limit is 10000",
        ),
        # Text PostgreSQL cannot hold is refused before execution, for every argument
        # (schema/input_text.py); the usage service's own check serves POST /usage.
        ({"filter": {"customerId": ["a\u0000"]}}, "BAD_INPUT", "NUL"),
        ({"groupBy": ["a\u0000"]}, "BAD_INPUT", "NUL"),
        ({"meterApiName": "calls\u0000"}, "BAD_INPUT", "NUL"),
        ({"limit": 0}, "VALIDATION_ERROR", "limit must be between"),
    ],
)
async def test_request_sizes_are_bounded(
    gql: GraphQLClient, calls: None, more: dict[str, Any], code: str, words: str
) -> None:
    variables = usage_input("DAY", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z", **more)
    error = await usage_error(gql, variables)
    assert error["extensions"]["code"] == code, error
    assert words in error["message"], error


async def test_amberflo_usage_refuses_hostile_ranges_at_once(
    http: httpx.AsyncClient, account: TestAccount, gql: GraphQLClient, calls: None
) -> None:
    for grouping, start, end, words in (
        ("HOUR", 0, 253_370_764_800, f"limit is {MAX_BUCKETS}"),
        ("MONTH", 0, 253_370_764_800, f"limit is {MAX_BUCKETS}"),
        ("MONTH", 253_000_000_000, 253_402_300_799, "endTimeInSeconds must be between"),
    ):
        started = time.monotonic()
        response = await http.post(
            "/usage",
            json={
                "meterApiName": "calls",
                "timeGroupingInterval": grouping,
                "timeRange": {"startTimeInSeconds": start, "endTimeInSeconds": end},
            },
            headers={"X-API-KEY": account.admin_key},
        )
        assert time.monotonic() - started < 2
        assert response.status_code == 400, response.text
        assert words in response.json()["error"], response.text


async def test_percentage_change_of_extreme_values_is_not_a_500(
    gql: GraphQLClient, calls: None, worker: subprocess.Popen[bytes]
) -> None:
    first = int((NOW - timedelta(hours=3)).timestamp() * 1000)
    second = int((NOW - timedelta(hours=2)).timestamp() * 1000)
    await ingest(
        gql,
        [
            {
                "meterApiName": "calls",
                "customerId": "c0",
                "meterValue": 1e-9,
                "meterTimeInMillis": first,
                "uniqueId": "tiny",
            },
            {
                "meterApiName": "calls",
                "customerId": "c0",
                "meterValue": 1e17,
                "meterTimeInMillis": second,
                "uniqueId": "huge",
            },
        ],
    )
    variables = usage_input(
        "HOUR", (NOW - timedelta(hours=3)).isoformat(), (NOW - timedelta(hours=1)).isoformat()
    )
    deadline = time.monotonic() + 20
    while True:
        response = await gql.post(USAGE, {"input": variables})
        body = response.json()
        assert "errors" not in body, body
        values = body["data"]["usage"]["groups"][0]["values"]
        if values[1]["value"] != "0":
            break
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.2)
    # (1e17 - 1e-9) / 1e-9 * 100: 30 digits, beyond Decimal's default 28.
    assert values[1]["percentageFromPrevious"] == "9999999999999999999999999900.00"


# ---------------------------------------------------------------- the event loop stays free


@asynccontextmanager
async def health_probe(base_url: str) -> AsyncIterator[list[float]]:
    """Polls /healthz on its own connection while the block runs; yields the latencies."""
    latencies: list[float] = []
    stop = asyncio.Event()

    async def poll() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
            while not stop.is_set():
                started = time.monotonic()
                response = await client.get("/healthz")
                latencies.append(time.monotonic() - started)
                assert response.status_code == 200, response.text
                await asyncio.sleep(0.05)

    task = asyncio.create_task(poll())
    try:
        yield latencies
    finally:
        stop.set()
        await task


async def one_event_per_customer(
    gql: GraphQLClient, groups: int, *, value: Callable[[int], int]
) -> dict[str, Any]:
    """`groups` customers c0.. with one event each two hours ago; the widest HOUR usage input
    (MAX_BUCKETS intervals) grouped by customer."""
    at = int((NOW - timedelta(hours=2)).timestamp() * 1000)
    await ingest(
        gql,
        [
            {
                "meterApiName": "calls",
                "customerId": f"c{i}",
                "meterValue": value(i),
                "meterTimeInMillis": at,
                "uniqueId": f"u{i}",
            }
            for i in range(groups)
        ],
    )
    start = NOW - timedelta(hours=MAX_BUCKETS - 1)
    return usage_input(
        "HOUR", start.isoformat(), (NOW + timedelta(hours=1)).isoformat(), groupBy=["customerId"]
    )


async def test_the_worst_allowed_queries_leave_the_server_responsive(
    server: str,
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    calls: None,
    worker: subprocess.Popen[bytes],
) -> None:
    # As many groups as the answer allows at the bucket limit: MAX_VALUES values.
    groups = MAX_VALUES // MAX_BUCKETS
    widest = await one_event_per_customer(gql, groups, value=lambda i: i + 1)
    deadline = time.monotonic() + 30
    while (
        len((await gql(USAGE, {"input": {**widest, "limit": groups}}))["usage"]["groups"]) < groups
    ):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.2)
    token = await session_token(gql, "c0")
    # 10,000 months: the largest range a customer token may ask for.
    token_widest = usage_input("MONTH", "1970-01-01T00:00:00Z", "2803-05-01T00:00:00Z")
    amberflo = {
        "meterApiName": "calls",
        "timeGroupingInterval": "HOUR",
        "groupBy": ["customerId"],
        "timeRange": {
            "startTimeInSeconds": int((NOW - timedelta(hours=MAX_BUCKETS - 1)).timestamp()),
            "endTimeInSeconds": int((NOW + timedelta(hours=1)).timestamp()),
        },
    }
    async with health_probe(server) as latencies:
        answers = await asyncio.gather(
            gql.post(USAGE, {"input": widest}),
            gql.post(USAGE, {"input": token_widest}, key=token),
            http.post("/usage", json=amberflo, headers={"X-API-KEY": account.admin_key}),
            gql.post(
                USAGE,
                {"input": usage_input("HOUR", "0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z")},
            ),
        )
    admin, customer, rest, hostile = answers
    for response in (admin, customer, rest):
        assert response.status_code == 200, response.text
        assert "errors" not in response.json(), response.text[:500]
    assert len(admin.json()["data"]["usage"]["groups"]) == groups
    assert len(admin.json()["data"]["usage"]["intervals"]) == MAX_BUCKETS
    assert len(customer.json()["data"]["usage"]["intervals"]) == MAX_BUCKETS
    assert len(rest.json()["clientMeters"]) == groups
    assert hostile.json()["errors"][0]["extensions"]["code"] == "VALIDATION_ERROR"
    assert len(latencies) >= 3, latencies
    # The machine is shared: a blocked loop shows as seconds, a busy one as tens of ms.
    assert max(latencies) < 1, sorted(latencies)[-5:]


async def test_an_answer_past_the_value_limit_is_refused(
    gql: GraphQLClient, calls: None, worker: subprocess.Popen[bytes]
) -> None:
    groups = MAX_VALUES // MAX_BUCKETS + 1
    widest = await one_event_per_customer(gql, groups, value=lambda i: 1)
    deadline = time.monotonic() + 30
    while True:
        response = await gql.post(USAGE, {"input": widest})
        errors = response.json().get("errors")
        if errors:
            break
        assert time.monotonic() < deadline, "the rollup never showed every customer"
        await asyncio.sleep(0.2)
    assert errors[0]["extensions"]["code"] == "VALIDATION_ERROR", errors
    assert f"the limit is {MAX_VALUES}" in errors[0]["message"], errors
    # With a limit on the groups, the same range answers.
    data = await gql(USAGE, {"input": {**widest, "limit": 3}})
    assert len(data["usage"]["groups"]) == 3


# ---------------------------------------------------------------- statement timeout


async def test_the_engine_sets_the_statement_timeout(database_url: str) -> None:
    engine = create_engine(database_url, pool_size=1, statement_timeout_ms=1234)
    try:
        async with engine.connect() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "1234ms"
    finally:
        await engine.dispose()


async def test_the_api_and_the_worker_engines_get_their_settings(database_url: str) -> None:
    from meterflow.app import create_app
    from meterflow.config import Settings
    from meterflow.workers.settings import build_worker

    settings = Settings(
        database_url=database_url,
        statement_timeout_ms=2345,
        worker_statement_timeout_ms=0,
        secret_key=TEST_SECRET_KEY,
    )
    assert Settings().statement_timeout_ms == 15_000
    app = create_app(settings)
    try:
        async with app.state.engine.connect() as conn:
            assert await conn.scalar(text("SHOW statement_timeout")) == "2345ms"
    finally:
        await app.state.engine.dispose()
    worker = build_worker(settings.model_copy(update={"worker_statement_timeout_ms": 3456}))
    ctx: dict[str, Any] = {}
    await worker.on_startup(ctx)  # type: ignore[misc]
    try:
        async with ctx["session_factory"]() as session:
            assert await session.scalar(text("SHOW statement_timeout")) == "3456ms"
    finally:
        await worker.on_shutdown(ctx)  # type: ignore[misc]


@pytest.fixture(scope="module")
def impatient_server(server_env: dict[str, str]) -> Iterator[str]:
    """A server whose statements may run 1 s at most."""
    with running_server({**server_env, "METERFLOW_STATEMENT_TIMEOUT_MS": "1000"}) as url:
        yield url


@asynccontextmanager
async def rollups_locked(engine: AsyncEngine) -> AsyncIterator[None]:
    """Holds an exclusive lock on usage_rollups, so any statement reading it waits."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        await conn.execute(text("LOCK TABLE usage_rollups IN ACCESS EXCLUSIVE MODE"))
        try:
            yield
        finally:
            await transaction.rollback()


async def test_a_statement_past_the_timeout_is_a_clear_error(
    impatient_server: str, engine: AsyncEngine, account: TestAccount
) -> None:
    async with httpx.AsyncClient(base_url=impatient_server, timeout=10) as http:
        gql = GraphQLClient(http, account.admin_key)
        await create_meter(gql, "calls", dimensions=["region"])
        hourly = usage_input("HOUR", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")
        async with rollups_locked(engine):
            started = time.monotonic()
            response = await gql.post(USAGE, {"input": hourly})
            assert time.monotonic() - started < 8
            assert response.status_code == 200, response.text
            error = response.json()["errors"][0]
            assert error["extensions"]["code"] == "TIMEOUT", error
            assert "statement timeout" in error["message"]
            assert "SELECT" not in error["message"]

            response = await http.post(
                "/usage",
                json={
                    "meterApiName": "calls",
                    "timeGroupingInterval": "HOUR",
                    "timeRange": {
                        "startTimeInSeconds": 1_767_225_600,
                        "endTimeInSeconds": 1_767_312_000,
                    },
                },
                headers={"X-API-KEY": account.admin_key},
            )
            assert response.status_code == 504, response.text
            assert "statement timeout" in response.json()["error"]
            assert (await http.get("/healthz")).status_code == 200
        # The lock is gone: the same query answers.
        data = await gql(USAGE, {"input": hourly})
        assert len(data["usage"]["intervals"]) == 24


# ---------------------------------------------------------------- billing periods from a request


async def active_plan(gql: GraphQLClient, interval: str = "DAY") -> str:
    await create_meter(gql, "calls")
    plan = (
        await gql(
            """mutation($i: BillingInterval!) { createPricingPlan(input: {name: "p",
            billingPeriod: {interval: $i}, items: [{meterApiName: "calls",
            priceModel: {type: "per_unit", unitPrice: "0.25"}}]}) {
              ... on PricingPlan { id } } }""",
            {"i": interval},
        )
    )["createPricingPlan"]["id"]
    await gql("mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }", {"id": plan})
    await gql('mutation { createCustomer(input: {customerId: "payer"}) { __typename } }')
    return plan  # type: ignore[no-any-return]


ASSIGN = """mutation($p: ID!, $t: DateTime) { assignPricingPlan(input: {customerId: "payer",
    planId: $p, startTime: $t}) { __typename ... on Error { code message } } }"""


@pytest.mark.parametrize(
    ("interval", "start"),
    [
        ("YEAR", "9999-06-01T00:00:00Z"),
        ("MONTH", "9999-12-31T23:00:00Z"),
        ("DAY", "0001-01-01T00:00:00Z"),
        ("DAY", "0001-01-01T00:00:00+05:00"),
        ("WEEK", "1900-01-01T00:00:00Z"),
    ],
)
async def test_a_plan_assignment_outside_the_time_window_is_refused(
    http: httpx.AsyncClient, gql: GraphQLClient, interval: str, start: str
) -> None:
    plan = await active_plan(gql, interval)
    started = time.monotonic()
    result = (await gql(ASSIGN, {"p": plan, "t": start}))["assignPricingPlan"]
    assert time.monotonic() - started < 5
    assert result["__typename"] == "ValidationError", result
    assert "startTime must lie between" in result["message"], result
    invoices = await gql('{ invoices(customerId: "payer") { edges { cursor } } }')
    assert invoices["invoices"]["edges"] == []
    assert (await http.get("/healthz")).status_code == 200


async def test_a_plan_assignment_without_a_zone_is_bad_input(gql: GraphQLClient) -> None:
    plan = await active_plan(gql, "MONTH")
    start = (NOW - timedelta(days=40)).replace(day=1, hour=0)
    errors = await gql.errors(ASSIGN, {"p": plan, "t": start.replace(tzinfo=None).isoformat()})
    assert errors[0]["extensions"]["code"] == "BAD_INPUT" and "offset" in errors[0]["message"]
    result = (await gql(ASSIGN, {"p": plan, "t": start.isoformat()}))["assignPricingPlan"]
    assert result["__typename"] == "PlanAssignment", result


async def test_credits_expiring_without_a_zone_or_at_the_end_of_time_are_not_a_500(
    gql: GraphQLClient,
) -> None:
    await active_plan(gql, "MONTH")
    errors = await gql.errors(
        """mutation($e: DateTime) { grantCredits(input: {customerId: "payer", amount: "5",
            expiresAt: $e}) { __typename } }""",
        {"e": "2999-01-01T00:00:00"},
    )
    assert errors[0]["extensions"]["code"] == "BAD_INPUT" and "offset" in errors[0]["message"]
    for expires in ("2999-01-01T00:00:00Z", "9999-12-31T23:59:59-05:00"):
        result = await gql.post(
            """mutation($e: DateTime) { grantCredits(input: {customerId: "payer", amount: "5",
                expiresAt: $e}) { __typename ... on Error { code message } } }""",
            {"e": expires},
        )
        body = result.json()
        assert "errors" not in body, body
        assert body["data"]["grantCredits"]["__typename"] in ("Wallet", "ValidationError"), body
