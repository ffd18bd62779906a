"""A query's cost (lists multiplied by the pages they ask for) is computed before it runs, and an
operation over METERFLOW_MAX_QUERY_COST is refused with its figure, over HTTP and WebSocket."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from graphql import GraphQLSchema, parse

from meterflow.graphql_api import schema as api_schema
from meterflow.query_cost import COST_CEILING, LIST_ESTIMATE, MAX_WALK_DEPTH, query_cost
from tests.client import GraphQLClient, TestAccount
from tests.conftest import running_server
from tests.ws import connect

SCHEMA: GraphQLSchema = api_schema._schema
PAGE = 50  # the resolvers' page without `first` (services/pagination.py)


def cost(
    query: str,
    variables: dict[str, Any] | None = None,
    operation: str | None = None,
    **options: Any,
) -> int:
    return query_cost(
        parse(query), operation, variables, SCHEMA, **{"default_page_size": PAGE, **options}
    )


# ---------------------------------------------------------------- the calculator

# customers(100) * node (1 + customerId + currentUsage (1 + 10 * value)) + edges + customers.
CUSTOMERS_100 = "{ customers(first: 100) { edges { node { customerId currentUsage { value } } } } }"
CUSTOMERS_100_COST = 2 + 100 * (1 + 1 + (1 + LIST_ESTIMATE * 1))


def test_fields_cost_one_and_lists_multiply() -> None:
    assert LIST_ESTIMATE == 10
    assert cost("{ account { id name } }") == 3
    assert cost("{ __typename }") == 1
    assert cost("{ meters { meterApiName label } }") == 1 + LIST_ESTIMATE * 2
    assert cost("{ meters { meterApiName dimensions } }") == 1 + LIST_ESTIMATE * 2  # scalars: 1
    assert cost(CUSTOMERS_100) == CUSTOMERS_100_COST == 1302
    assert cost("{ meters { label } }", list_estimate=3) == 4


def test_connections_page_their_edges_only() -> None:
    # pageInfo is counted once, not once per edge.
    query = "{ customers(first: 100) { pageInfo { hasNextPage endCursor } edges { cursor } } }"
    assert cost(query) == 1 + (1 + 2) + (1 + 100)


def test_default_page_sizes() -> None:
    page = "{ customers { edges { node { customerId } } } }"
    assert cost(page) == 2 + PAGE * 2
    assert cost(page, default_page_size=7) == 2 + 7 * 2
    # An explicit null is the default page too.
    assert cost("{ customers(first: null) { edges { cursor } } }") == 2 + PAGE
    # A schema default (alertEvents(first: Int! = 50)) is the page when `first` is absent.
    assert cost("{ alertEvents { id } }") == 1 + 50
    assert cost("{ alertEvents(first: 3) { id } }") == 1 + 3
    # A plain list with `first`: its value.
    assert cost('{ topUps(customerId: "c", first: 4) { id } }') == 1 + 4
    assert cost('{ topUps(customerId: "c") { id } }') == 1 + LIST_ESTIMATE


def test_first_from_variables() -> None:
    query = "query($n: Int) { customers(first: $n) { edges { cursor } } }"
    assert cost(query, {"n": 100}) == 2 + 100
    assert cost(query, {"n": None}) == 2 + PAGE
    assert cost(query, {}) == 2 + PAGE
    with_default = "query($n: Int = 20) { customers(first: $n) { edges { cursor } } }"
    assert cost(with_default, {}) == 2 + 20
    assert cost(with_default, {"n": 30}) == 2 + 30
    # JSON numbers arrive as floats when written 1e2.
    assert cost(query, {"n": 1e2}) == 2 + 100


def test_nested_lists_and_connections_multiply() -> None:
    # invoices(5) * lines (10) * tiers (10).
    invoices = "{ invoices(first: 5) { edges { node { lines { tiers { amount } } } } } }"
    tiers = 1 + LIST_ESTIMATE * 1
    lines = 1 + LIST_ESTIMATE * tiers
    assert cost(invoices) == 2 + 5 * (1 + lines) == 562
    # A connection inside a connection's nodes: customers(10) * ledger(20).
    ledgers = """{ customers(first: 10) { edges { node {
        wallet { ledger(first: 20) { edges { node { id } } } } } } } }"""
    ledger = 2 + 20 * 2
    assert cost(ledgers) == 2 + 10 * (1 + (1 + ledger)) == 442
    # Usage: groups (10) * values (10).
    usage = """query($i: UsageQueryInput!) { usage(input: $i) {
        intervals groups { group values { start value } } } }"""
    assert cost(usage, {"i": {}}) == 1 + 1 + (1 + LIST_ESTIMATE * (1 + (1 + LIST_ESTIMATE * 2)))


def test_fragments_and_inline_fragments_cost_what_they_select() -> None:
    spread = """{ customers(first: 100) { ...Page } }
        fragment Page on CustomerConnection { edges { node { ...C } } }
        fragment C on Customer { customerId currentUsage { value } }"""
    assert cost(spread) == CUSTOMERS_100_COST
    inline = """{ customers(first: 100) { ... on CustomerConnection {
        edges { node { ... on Customer { customerId ... { currentUsage { value } } } } } } } }"""
    assert cost(inline) == CUSTOMERS_100_COST
    # A fragment used twice counts twice.
    twice = """{ a: customers(first: 100) { ...Page } b: customers(first: 100) { ...Page } }
        fragment Page on CustomerConnection {
            edges { node { customerId currentUsage { value } } } }"""
    assert cost(twice) == 2 * CUSTOMERS_100_COST
    # Each member of a result union is counted (an upper bound).
    union = """mutation { createCustomer(input: {customerId: "c"}) {
        __typename ... on Customer { customerId } ... on ValidationError { field message } } }"""
    assert cost(union) == 1 + (1 + 1 + 2)


def test_inputs_are_not_counted() -> None:
    events = ", ".join(f'{{uniqueId: "e{i}", customerId: "c"}}' for i in range(200))
    assert cost(f"mutation {{ ingestMeterEvents(events: [{events}]) {{ accepted }} }}") == 2
    outcomes = """mutation($e: [MeterEventInput!]!) {
        ingestMeterEvents(events: $e) { outcomes { status } } }"""
    assert cost(outcomes, {"e": [{}] * 10_000}) == 1 + (1 + LIST_ESTIMATE)


def test_operations_subscriptions_and_introspection() -> None:
    two = """query Cheap { meters { label } }
        query Costly { customers(first: 100) { edges { node { customerId } } } }"""
    assert cost(two, operation="Cheap") == 1 + LIST_ESTIMATE
    assert cost(two, operation="Costly") == 2 + 100 * 2
    assert cost(two) == 2 + 100 * 2  # ambiguous: the executor refuses it; the worst counts
    assert cost(two, operation="Missing") == 2 + 100 * 2
    subscription = "subscription { meterEventsIngested { events { uniqueId } } }"
    assert cost(subscription) == 1 + (1 + LIST_ESTIMATE)
    # Introspection reads the static schema: its root costs 1, whatever it selects.
    assert cost("{ __schema { types { fields { args { name } } } } }") == 1
    assert cost('{ __type(name: "Meter") { fields { name } } }') == 1


def test_absurd_values_saturate_and_never_crash() -> None:
    page = "{ customers(first: %s) { edges { node { customerId } } } }"
    assert cost(page % "1000000000") == 2 + 1_000_000_000 * 2
    assert cost(page % "1000000000", ceiling=50_001) == 50_001
    assert cost(page % ("9" * 5_000)) == COST_CEILING  # int() refuses > 4,300 digits
    assert cost(page % -5) == 2  # the resolver refuses it; nothing below counts
    assert cost(page % ("-" + "9" * 5_000)) == 2
    variable = "query($n: Int) { customers(first: $n) { edges { node { customerId } } } }"
    assert cost(variable, {"n": 1e9}) == 2 + 2_000_000_000
    assert cost(variable, {"n": 10**40}) == COST_CEILING
    assert cost(variable, {"n": -1}) == 2
    for not_a_number in ("100", True, 1.5, float("inf"), float("nan"), [3], {"a": 1}):
        assert cost(variable, {"n": not_a_number}) == 2 + PAGE * 2, not_a_number
    # Nested pages of a billion each: saturated, not a 10^36 product.
    nested = """{ customers(first: 1000000000) { edges { node { wallet {
        ledger(first: 1000000000) { edges { node { id } } } } } } } }"""
    assert cost(nested) == COST_CEILING
    # Garbage the validator refuses (run in parallel with it) still costs something finite.
    assert cost("{ nope { nope } customers { nope { x } } meters { label { deeper } } }") > 0


def test_fragment_chains_and_cycles_are_cheap_to_cost() -> None:
    # F0 spreads F1 twice, F1 spreads F2 twice, ...: 2^40 selections, costed in linear time.
    levels = 40
    chain = "".join(
        f"fragment F{i} on Customer {{ ...F{i + 1} a{i}: customerId ...F{i + 1} }}\n"
        for i in range(levels)
    )
    query = (
        '{ customer(customerId: "c") { ...F0 } }\n'
        + chain
        + f"fragment F{levels} on Customer {{ customerId }}"
    )
    started = time.monotonic()
    assert cost(query) == COST_CEILING
    assert time.monotonic() - started < 1
    cycle = """{ customer(customerId: "c") { ...A } }
        fragment A on Customer { customerId ...B }
        fragment B on Customer { name ...A }"""
    assert cost(cycle) == 1 + 2
    assert cost('{ customer(customerId: "c") { ...Missing } }') == 1


def test_walks_deeper_than_any_allowed_query_saturate() -> None:
    depth = MAX_WALK_DEPTH + 5
    fragments = "... on CustomerConnection { " * depth
    deep = "{ customers { " + fragments + "edges { cursor }" + " }" * (depth + 2)
    assert cost(deep) == COST_CEILING


# ---------------------------------------------------------------- through the server

# 500 invoices * lines (10) * tiers (10).
COSTLY = """query($n: Int) { invoices(first: $n) { edges { node {
    id lines { name tiers { quantity amount } } } } } }"""


def costly_figure(n: int) -> int:
    return 2 + n * (1 + 1 + (1 + LIST_ESTIMATE * (1 + (1 + LIST_ESTIMATE * 2))))


def assert_too_costly(errors: list[dict[str, Any]], figure: int, limit: int) -> None:
    assert len(errors) == 1, errors
    message = errors[0]["message"]
    assert f"query cost {figure:,} exceeds the limit of {limit:,}" in message, message
    assert "first" in message
    assert errors[0]["extensions"]["code"] == "QUERY_TOO_COSTLY"


async def test_a_costly_query_is_refused_with_its_figure(gql: GraphQLClient) -> None:
    assert costly_figure(500) == 111_502
    response = await gql.post(COSTLY, {"n": 500})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body.get("data") is None, body
    assert_too_costly(body["errors"], 111_502, 100_000)
    # The same shape with small pages is answered, and the answer is as it always was.
    response = await gql.post(COSTLY, {"n": 10})
    assert response.json() == {"data": {"invoices": {"edges": []}}}
    # The default limit lets the everyday pages through.
    assert (await gql(CUSTOMERS_100))["customers"] == {"edges": []}
    assert await gql("{ customers { edges { node { customerId currentUsage { value } } } } }")


async def test_customer_tokens_are_costed_too(gql: GraphQLClient) -> None:
    # Their documents are validated by discovery.py's own pass, with the same rules.
    await gql('mutation { createCustomer(input: {customerId: "c"}) { __typename } }')
    created = await gql(
        'mutation { createCustomerSession(customerId: "c") { ... on CustomerSession { token } } }'
    )
    token = created["createCustomerSession"]["token"]
    assert_too_costly(await gql.errors(COSTLY, {"n": 500}, key=token), 111_502, 100_000)


async def test_refused_over_websocket_too(server: str, account: TestAccount) -> None:
    async with connect(server, {"apiKey": account.admin_key}) as ws:
        await ws.start(COSTLY, {"n": 500})
        refused = await ws.message()
        assert refused["type"] == "error", refused
        assert_too_costly(refused["payload"], 111_502, 100_000)
        await ws.start(COSTLY, {"n": 10})
        assert (await ws.data()) == {"invoices": {"edges": []}}


FRUGAL_LIMIT = 100


@pytest.fixture(scope="module")
def frugal_server(server_env: dict[str, str]) -> Iterator[str]:
    """A server whose operations may cost 100 at most."""
    with running_server({**server_env, "METERFLOW_MAX_QUERY_COST": str(FRUGAL_LIMIT)}) as url:
        yield url


@pytest.fixture
async def frugal(frugal_server: str, account: TestAccount) -> AsyncIterator[GraphQLClient]:
    async with httpx.AsyncClient(base_url=frugal_server, timeout=30) as client:
        yield GraphQLClient(client, account.admin_key)


async def test_the_limit_is_a_setting(frugal: GraphQLClient) -> None:
    modest = "{ customers { edges { node { customerId name } } } }"
    assert cost(modest) == 2 + PAGE * 3 == 152
    assert_too_costly(await frugal.errors(modest), 152, FRUGAL_LIMIT)
    small = "{ customers(first: 20) { edges { node { customerId name } } } }"
    assert cost(small) == 62
    assert (await frugal(small)) == {"customers": {"edges": []}}


async def test_a_refused_mutation_never_runs(frugal: GraphQLClient) -> None:
    mutation = """mutation { createCustomer(input: {customerId: "costly"}) { ... on Customer {
        customerId currentUsage { meterApiName value }
        wallet { ledger { edges { node { id } } } } } } }"""
    assert cost(mutation) == 1 + 1 + (1 + LIST_ESTIMATE * 2) + (1 + 2 + PAGE * 2) == 126
    assert_too_costly(await frugal.errors(mutation), 126, FRUGAL_LIMIT)
    assert (await frugal('{ customer(customerId: "costly") { customerId } }')) == {"customer": None}


async def test_a_costly_subscription_is_refused(frugal_server: str, account: TestAccount) -> None:
    fields = "id uniqueId customerId meterApiName meterValue eventTime ingestedAt late invoiceId"
    subscription = f"subscription {{ meterEventsIngested {{ events {{ {fields} }} }} }}"
    assert cost(subscription) == 2 + LIST_ESTIMATE * 9 == 92
    too_much = subscription.replace("invoiceId", "invoiceId planId cancelledAt")
    assert cost(too_much) == 112
    async with connect(frugal_server, {"apiKey": account.admin_key}) as ws:
        await ws.start(too_much)
        refused = await ws.message()
        assert refused["type"] == "error", refused
        assert_too_costly(refused["payload"], 112, FRUGAL_LIMIT)
