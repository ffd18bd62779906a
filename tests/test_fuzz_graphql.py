"""Schemathesis over every query and mutation in schema.graphql, against a real `meterflow serve`.

Run twice: with an admin key and with a customer session token, over one account seeded with
meters, customers, events, a plan with a running invoice and credits. The property, for every
generated operation (valid and deliberately invalid ones): no HTTP 5xx, no masked unexpected
error ("Internal server error.", or an INTERNAL_SERVER_ERROR code), no null in a non-null field,
an answer within the request timeout, and /healthz still 200 after each operation's run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from schemathesis.graphql import nodes

from meterflow.db import SessionFactory
from tests.client import GraphQLClient
from tests.conftest import ROOT, make_account
from tests.fuzz_support import (
    REQUEST_TIMEOUT_SECONDS,
    FuzzServer,
    fuzz_settings,
    summary,
    wait_briefly_for_health,
)
from tests.helpers import create_meter, event, ingest

pytestmark = [pytest.mark.fuzz, pytest.mark.timeout(180)]

EXAMPLES_PER_OPERATION = 15

CUSTOMERS = ("acme", "globex", "initech")
METERS = ("calls", "seats", "uptime")

DATETIME_EDGES = [
    *("0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z", "1700-01-01T00:00:00Z"),
    *("2026-13-01T00:00:00Z", "yesterday", "", "2026-01-01T00:00:00+25:00"),
]
# meterflow's scalars. Each mixes well-formed values with the edges the server must refuse with
# a clear error, never a 500 (or a process that stops answering: a usage range over centuries).
schemathesis.graphql.scalar(
    "DateTime",
    st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(datetime.isoformat),
        st.sampled_from(DATETIME_EDGES),
    ).map(nodes.String),
)
schemathesis.graphql.scalar(
    "Decimal",
    st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
        st.sampled_from(["0", "-1", "1e400", "-1E+131071", "1e-400", "NaN", "Infinity", "x", ""]),
    ).map(nodes.String),
)
schemathesis.graphql.scalar(
    "JSON",
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=8,
    )
    .map(json.dumps)
    .map(nodes.String),
)


HOSTILE_STRINGS = [
    *("a\x00b", "\x00", "\ud800", "x\udfffy", "\u202e\u0000", " ", "x" * 20_000),
    *("' OR 1=1 --", "%s%s%n", "{{7*7}}", "../../etc/passwd", "mfs_x.y", "COM1"),
    *("1e400", "NaN", "-1E+131071", "9999-12-31T23:59:59Z", "0001-01-01T00:00:00Z"),
]


def _known(dictionary: str, *arguments: str) -> dict[str, Any]:
    # Half the time an argument of that name takes a name the seeded account has, so the
    # generated operations reach real rows, not only "not found".
    return {
        f"*.*.{argument}": {"dictionary": dictionary, "probability": 0.5} for argument in arguments
    }


CONFIG = SchemathesisConfig.from_dict(
    {
        "dictionaries": {
            "customers": {"values": list(CUSTOMERS)},
            "meters": {"values": list(METERS)},
            "hostile": {"values": HOSTILE_STRINGS},
        },
        "parameters": {
            **_known("customers", "customerId", "input.customerId", "events[*].customerId"),
            **_known("meters", "meterApiName", "input.meterApiName", "events[*].meterApiName"),
        },
        "generation": {
            # Valid operations and deliberately invalid ones (wrong types, missing arguments).
            "mode": "all",
            # Any other string argument is sometimes one a database or a parser chokes on.
            "dictionaries": {"string": {"dictionary": "hostile", "probability": 0.2}},
        },
    }
)
# The checked-in SDL (a test keeps it equal to the served schema): loading it needs no server,
# and introspection is for admin keys only, so a customer token could not load it anyway.
schema = schemathesis.graphql.from_path(ROOT / "schema.graphql", config=CONFIG)


@dataclass(frozen=True)
class Seeded:
    admin_key: str
    customer_token: str


@pytest.fixture(scope="module")
def fuzz_server(server_env: dict[str, str]) -> Iterator[FuzzServer]:
    server = FuzzServer(server_env)
    server.start()
    yield server
    server.close()


async def seed_account(session_factory: SessionFactory, base_url: str) -> Seeded:
    """One account with something in every area, so queries walk real rows."""
    account = await make_account(session_factory, name="fuzz-graphql")
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        gql = GraphQLClient(http, account.admin_key)
        await create_meter(gql, "calls", dimensions=["region"])
        await create_meter(gql, "seats", "UNIQUE_COUNT", aggregationDimension="user")
        await create_meter(gql, "uptime", "DURATION", activate=False)
        for customer in CUSTOMERS:
            await gql(
                "mutation($c: String!) { createCustomer(input: {customerId: $c}) { __typename } }",
                {"c": customer},
            )
        now = int(datetime.now(UTC).timestamp() * 1000)
        events = [
            event("calls", customer, 3, at=now - 60_000 * i, region="eu")
            for i, customer in enumerate(CUSTOMERS)
        ]
        await ingest(gql, [*events, event("seats", "acme", 1, at=now - 1000, user="u1")])
        plan = await gql(
            """mutation($input: CreatePricingPlanInput!) { createPricingPlan(input: $input) {
                 ... on PricingPlan { id } } }""",
            {
                "input": {
                    "name": "fuzz",
                    "billingPeriod": {"interval": "MONTH"},
                    "items": [
                        {
                            "meterApiName": "calls",
                            "priceModel": {"type": "per_unit", "unitPrice": "0.5"},
                        }
                    ],
                }
            },
        )
        plan_id = plan["createPricingPlan"]["id"]
        await gql(
            "mutation($id: ID!) { activatePricingPlan(id: $id) { __typename } }", {"id": plan_id}
        )
        await gql(
            """mutation($input: AssignPricingPlanInput!) {
                 assignPricingPlan(input: $input) { __typename } }""",
            {"input": {"customerId": "acme", "planId": plan_id}},
        )
        await gql(
            """mutation { grantCredits(input: {customerId: "acme", amount: "10",
                 reason: "prepaid", priority: 1}) { __typename } }"""
        )
        session = await gql(
            """mutation { createCustomerSession(customerId: "acme") {
                 ... on CustomerSession { token } } }"""
        )
        token = session["createCustomerSession"]["token"]
        # The customer run would prove nothing if the token did not work.
        seen = await gql('{ customer(customerId: "acme") { customerId } }', key=token)
        assert seen == {"customer": {"customerId": "acme"}}
    return Seeded(account.admin_key, token)


# One account per run: the admin run's mutations (disabling customers, deprecating meters...)
# must not change what the customer run meets.
@pytest.fixture(scope="module")
async def admin_account(session_factory: SessionFactory, fuzz_server: FuzzServer) -> Seeded:
    return await seed_account(session_factory, fuzz_server.base_url)


@pytest.fixture(scope="module")
async def customer_account(session_factory: SessionFactory, fuzz_server: FuzzServer) -> Seeded:
    return await seed_account(session_factory, fuzz_server.base_url)


def internal_errors(payload: Any) -> list[Any]:
    """The errors in a GraphQL answer that report a server fault rather than a client mistake."""
    if not isinstance(payload, dict):
        return [payload]
    faults = []
    for error in payload.get("errors") or []:
        extensions = error.get("extensions") or {}
        message = str(error.get("message", ""))
        if (
            message == "Internal server error."
            or extensions.get("code") in ("INTERNAL_SERVER_ERROR", "INTERNAL_ERROR")
            or "Cannot return null for non-nullable field" in message
        ):
            faults.append(error)
    return faults


def check_answer(server: FuzzServer, sent: str, call: Callable[[], requests.Response]) -> None:
    """Makes one request and fails with the request, the answer and the server's traceback
    unless the answer is a proper one: in time, no 5xx, no internal error."""
    offset = server.log_offset()
    where = f"{sent[:3000]}\n"
    try:
        response = call()
    except requests.RequestException as exc:
        raise AssertionError(
            f"no answer: {type(exc).__name__}: {exc}\n{where}"
            f"server stderr:\n{server.log_since(offset)}"
        ) from None
    detail = f"{where}answer {response.status_code}: {response.text[:2000]}\n"
    # A credential that stopped working would turn the rest of the run into 401s that test
    # nothing: nothing the fuzzer sends may revoke the key or the token it runs with.
    assert response.status_code != 401, detail
    assert response.status_code < 500, detail + f"server stderr:\n{server.log_since(offset)}"
    try:
        payload = response.json()
    except ValueError:
        # A 4xx may explain itself in plain text ("Batching is not enabled"); a 200 may not.
        assert response.status_code >= 400, detail + "the answer is not JSON"
        return
    faults = internal_errors(payload)
    assert not faults, detail + f"server stderr:\n{server.log_since(offset)}"


def check_case(case: Any, server: FuzzServer, headers: dict[str, str]) -> None:
    url = f"{server.base_url}/graphql"
    check_answer(
        server,
        case.body,
        lambda: case.call(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_SECONDS),
    )


def _usage(interval: str, start: str, end: str) -> str:
    query = """query($i: UsageQueryInput!) { usage(input: $i) { intervals } }"""
    variables = {"meterApiName": "calls", "timeGroupingInterval": interval}
    variables |= {"startTime": start, "endTime": end}
    return json.dumps({"query": query, "variables": {"i": variables}})


def _call(query: str, **variables: Any) -> str:
    return json.dumps({"query": query, "variables": variables})


_INGEST = "mutation($e: [MeterEventInput!]!) { ingestMeterEvents(events: $e) { rejected } }"
_EVENT = {"meterApiName": "calls", "customerId": "acme", "meterValue": 1}
# The seed corpus: requests known to have broken a server like this one, sent every run (random
# generation reaches them only by chance in a small budget). Raw bodies, as an attacker sends.
KNOWN_HOSTILE = {
    "body null": "null",
    "body 123": "123",
    'body "x"': '"x"',
    "body []": "[]",
    "variables nested 100,000 deep": '{"query": "query($v: JSON) { __typename }", "variables": '
    + '{"v": '
    + "[" * 100_000
    + "]" * 100_000
    + "}}",
    "usage HOUR from 0001 to 9999": _usage("HOUR", "0001-01-01T00:00:00Z", "9999-12-31T23:00:00Z"),
    "usage HOUR from 1700 to 2026": _usage("HOUR", "1700-01-01T00:00:00Z", "2026-01-01T00:00:00Z"),
    "usage MONTH ending in 9999": _usage("MONTH", "2000-01-01T00:00:00Z", "9999-12-31T23:00:00Z"),
    "usage DAY ending in 9999": _usage("DAY", "9000-01-01T00:00:00Z", "9999-12-31T23:00:00Z"),
    "meter named with a NUL": _call(
        "query($n: String!) { meter(meterApiName: $n) { id } }", n="a\x00"
    ),
    "wallet currency with a NUL": _call(
        'query($c: String) { wallet(customerId: "acme", currency: $c) { balance } }', c="U\x00"
    ),
    "cancel a uniqueId with a NUL": _call(
        'mutation($u: [String!]!) { cancelMeterEvents(meterApiName: "calls", uniqueIds: $u)'
        " { __typename } }",
        u=["a\x00b"],
    ),
    "ingest a time of 1e300": _call(_INGEST, e=[_EVENT | {"meterTimeInMillis": 1e300}]),
    "ingest a time past 9999": _call(_INGEST, e=[_EVENT | {"meterTimeInMillis": 3e14}]),
    "ingest a lone surrogate": _call(
        _INGEST, e=[_EVENT | {"meterTimeInMillis": 1.7e12, "uniqueId": "\ud800"}]
    ),
}


@pytest.fixture
def healthy_afterwards(fuzz_server: FuzzServer) -> Iterator[None]:
    fuzz_server.ensure_running()
    yield
    problem = wait_briefly_for_health(fuzz_server)
    assert problem is None, f"the server is unhealthy after this operation's run: {problem}"


@schema.parametrize()
@fuzz_settings(EXAMPLES_PER_OPERATION)
def test_admin_key(
    case: Any, fuzz_server: FuzzServer, admin_account: Seeded, healthy_afterwards: None
) -> None:
    check_case(case, fuzz_server, {"X-API-Key": admin_account.admin_key})


@schema.parametrize()
@fuzz_settings(EXAMPLES_PER_OPERATION)
def test_customer_token(
    case: Any, fuzz_server: FuzzServer, customer_account: Seeded, healthy_afterwards: None
) -> None:
    check_case(case, fuzz_server, {"Authorization": f"Bearer {customer_account.customer_token}"})


@pytest.mark.parametrize("who", ["admin key", "customer token"])
def test_known_hostile_requests(
    who: str, fuzz_server: FuzzServer, admin_account: Seeded, customer_account: Seeded
) -> None:
    """Every request of the seed corpus, with both credentials; lists every failure."""
    headers = (
        {"X-API-Key": admin_account.admin_key}
        if who == "admin key"
        else {"Authorization": f"Bearer {customer_account.customer_token}"}
    )
    headers["Content-Type"] = "application/json"
    failures = []
    for name, body in KNOWN_HOSTILE.items():
        fuzz_server.ensure_running()
        url = f"{fuzz_server.base_url}/graphql"

        def call(url: str = url, body: str = body) -> requests.Response:
            return requests.post(
                url, data=body.encode(), headers=headers, timeout=REQUEST_TIMEOUT_SECONDS
            )

        try:
            check_answer(fuzz_server, body, call)
            problem = wait_briefly_for_health(fuzz_server)
            assert problem is None, f"the server is unhealthy after it: {problem}"
        except AssertionError as failure:
            failures.append(f"- {name}: {summary(failure)}")
    assert not failures, f"{len(failures)} known hostile requests failed:\n" + "\n".join(failures)
