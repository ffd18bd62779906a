"""The dashboards' lists over GraphQL: `customers` and `invoices` filtered, ordered both ways and
walked in pages of 2 (the pages put together are the whole list as Python sorts it, ties
included); a cursor belongs to its order; hostile input is refused, never a 500.

Customers are made through the API. Plan assignments, invoices and equal creation times are
written straight into the tables: exact totals, periods and ties without a rating run.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import insert, update
from sqlmodel import col

from meterflow.db import SessionFactory, unit_of_work
from meterflow.models import Customer, Invoice, InvoiceStatus, PlanAssignment
from tests.client import GraphQLClient, TestAccount

CUSTOMERS = """
query($first: Int, $after: String, $filter: CustomerFilter, $orderBy: CustomerOrder) {
  customers(first: $first, after: $after, filter: $filter, orderBy: $orderBy) {
    edges { cursor node { id customerId name email enabled createdAt } }
    pageInfo { hasNextPage endCursor }
  }
}"""

INVOICES = """
query($customerId: String, $status: InvoiceStatus, $first: Int, $after: String,
      $filter: InvoiceFilter, $orderBy: InvoiceOrder) {
  invoices(customerId: $customerId, status: $status, first: $first, after: $after,
           filter: $filter, orderBy: $orderBy) {
    edges { cursor node { id customerId status periodStart total } }
    pageInfo { hasNextPage endCursor }
  }
}"""

CREATE = """
mutation($input: CreateCustomerInput!) {
  createCustomer(input: $input) { __typename ... on Error { message } }
}"""


async def walk(
    gql: GraphQLClient, query: str, field: str, variables: dict[str, Any], size: int = 2
) -> list[dict[str, Any]]:
    """Every node of a list, `size` at a time, following endCursor."""
    nodes: list[dict[str, Any]] = []
    after = None
    for _ in range(200):
        page = (await gql(query, {**variables, "first": size, "after": after}))[field]
        nodes += [edge["node"] for edge in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes
        assert len(page["edges"]) == size
        after = page["pageInfo"]["endCursor"]
        assert after == page["edges"][-1]["cursor"]
    raise AssertionError("the walk does not end")


async def one_page(
    gql: GraphQLClient, query: str, field: str, variables: dict[str, Any]
) -> dict[str, Any]:
    return (await gql(query, {"first": 100, **variables}))[field]  # type: ignore[no-any-return]


def sorted_by(
    rows: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any], descending: bool
) -> list[str]:
    """Ids sorted by (key, row id), both in one direction, as the API promises."""
    ordered = sorted(rows, key=lambda r: (key(r), uuid.UUID(r["id"])), reverse=descending)
    return [r["id"] for r in ordered]


def ids(nodes: list[dict[str, Any]]) -> list[str]:
    found = [node["id"] for node in nodes]
    assert len(found) == len(set(found)), "a row came twice"
    return found


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- customers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    customer_id: str
    name: str
    email: str | None
    enabled: bool
    has_plan: bool
    current_total: Decimal


SEEDS = [
    # Three names equal but for case: NAME ties, broken by row id.
    Seed("c01", "acme", "billing@acme.example", True, True, Decimal("50.00")),
    Seed("c02", "Acme", None, True, False, Decimal("20.00")),
    Seed("c03", "ACME", "ops@acme.example", False, False, Decimal(0)),
    Seed("c04", "beta", "x@beta.example", True, True, Decimal("20.00")),
    Seed("c05", "Zulu9", None, True, False, Decimal("20.0")),
    Seed("c06", "zulu10", "z@zulu.example", False, False, Decimal(0)),
    Seed("c07", "gamma", None, True, True, Decimal("7.5")),
    Seed("c08", "delta", "Delta@Mail.example", True, False, Decimal(0)),
    Seed("c09", "alpha", None, True, False, Decimal(0)),
]
SEED = {s.customer_id: s for s in SEEDS}


def _invoice(
    account_id: uuid.UUID,
    customer_id: str,
    start: datetime,
    end: datetime,
    status: InvoiceStatus,
    total: str,
) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "id": uuid.uuid4(),
        "customer_id": customer_id,
        "plan_id": uuid.uuid4(),
        "assignment_id": uuid.uuid4(),
        "period_start": start,
        "period_end": end,
        "status": status,
        "currency": "USD",
        "lines": [],
        "discounts": [],
        "subtotal": Decimal(total),
        "discount": Decimal(0),
        "credits_applied": Decimal(0),
        "total": Decimal(total),
    }


async def seed_customers(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> list[dict[str, Any]]:
    """SEEDS through the API, then their plans and invoices; returns every customer's node."""
    for seed in SEEDS:
        created = await gql(
            CREATE,
            {
                "input": {
                    "customerId": seed.customer_id,
                    "name": seed.name,
                    "email": seed.email,
                    "enabled": seed.enabled,
                }
            },
        )
        assert created["createCustomer"]["__typename"] == "Customer", created
    now = datetime.now(UTC)
    day = timedelta(days=1)
    a = account.account_id

    def assignment(customer: str, start: datetime, end: datetime | None) -> dict[str, Any]:
        return {
            "account_id": a,
            "id": uuid.uuid4(),
            "customer_id": customer,
            "plan_id": uuid.uuid4(),
            "start_time": start,
            "end_time": end,
        }

    assignments = [
        assignment("c01", now - 10 * day, None),
        assignment("c02", now - 10 * day, now - day),  # ended
        assignment("c03", now + 5 * day, None),  # not yet
        assignment("c04", now - 30 * day, now + 30 * day),
        assignment("c07", now - 90 * day, now - 30 * day),  # two: listed once
        assignment("c07", now - 30 * day, None),
    ]
    start, end = now - 10 * day, now + 20 * day
    invoices = [
        _invoice(a, "c01", start, end, InvoiceStatus.OPEN, "50.00"),
        _invoice(a, "c01", start - 30 * day, start, InvoiceStatus.PAID, "999"),  # past
        _invoice(a, "c02", start, end, InvoiceStatus.FINALIZED, "20.00"),
        _invoice(a, "c03", start, end, InvoiceStatus.VOID, "500"),  # void: counts as none
        _invoice(a, "c04", start, end, InvoiceStatus.OPEN, "20.00"),
        _invoice(a, "c05", start, end, InvoiceStatus.GRACE, "20.0"),
        _invoice(a, "c06", start, end, InvoiceStatus.OPEN, "0"),
        _invoice(a, "c07", start, end, InvoiceStatus.OPEN, "7.5"),
        _invoice(a, "c08", now + day, now + 31 * day, InvoiceStatus.OPEN, "300"),  # future
    ]
    async with unit_of_work(session_factory) as session:
        await session.execute(insert(PlanAssignment), assignments)
        await session.execute(insert(Invoice), invoices)
        # Three customers created at the same instant: CREATED_AT ties.
        await session.execute(
            update(Customer)
            .where(
                col(Customer.account_id) == a,
                col(Customer.customer_id).in_(["c04", "c05", "c06"]),
            )
            .values(created_at=datetime(2026, 1, 1, tzinfo=UTC))
        )
    nodes = (await one_page(gql, CUSTOMERS, "customers", {}))["edges"]
    assert len(nodes) == len(SEEDS)
    return [edge["node"] for edge in nodes]


CUSTOMER_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "CREATED_AT": lambda n: when(n["createdAt"]),
    "NAME": lambda n: n["name"].lower(),
    "CURRENT_TOTAL": lambda n: SEED[n["customerId"]].current_total,
}


async def test_customers_every_order_both_ways_in_pages_of_two(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> None:
    everyone = await seed_customers(gql, account, session_factory)
    for field, key in CUSTOMER_KEYS.items():
        for direction in ("ASC", "DESC"):
            order = {"field": field, "direction": direction}
            walked = await walk(gql, CUSTOMERS, "customers", {"orderBy": order})
            assert ids(walked) == sorted_by(everyone, key, direction == "DESC"), order
    # The ties are there to be broken.
    assert len({n["createdAt"] for n in everyone}) < len(everyone)
    # Without orderBy: creation order, as before.
    default = await walk(gql, CUSTOMERS, "customers", {})
    assert ids(default) == sorted_by(everyone, CUSTOMER_KEYS["CREATED_AT"], False)
    # orderBy's defaults: CREATED_AT, ASC.
    assert ids(await walk(gql, CUSTOMERS, "customers", {"orderBy": {}})) == ids(default)
    by_total = await walk(
        gql, CUSTOMERS, "customers", {"orderBy": {"field": "CURRENT_TOTAL", "direction": "DESC"}}
    )
    assert [n["customerId"] for n in by_total][:1] == ["c01"]  # not the past 999, nor the void


async def test_customers_filters_alone_and_combined(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> None:
    everyone = await seed_customers(gql, account, session_factory)

    def matching(search: str | None, has_plan: bool | None, enabled: bool | None) -> set[str]:
        found = set()
        for node in everyone:
            seed = SEED[node["customerId"]]
            texts = [seed.customer_id, seed.name, seed.email or ""]
            if search is not None and not any(search.lower() in t.lower() for t in texts):
                continue
            if has_plan is not None and seed.has_plan != has_plan:
                continue
            if enabled is not None and seed.enabled != enabled:
                continue
            found.add(seed.customer_id)
        return found

    cases: list[tuple[str | None, bool | None, bool | None, set[str]]] = [
        ("ACME", None, None, {"c01", "c02", "c03"}),  # names and emails, any case
        ("mail.EX", None, None, {"c08"}),  # an email only
        ("c0", None, None, {s.customer_id for s in SEEDS}),  # customer ids
        ("zulu", None, None, {"c05", "c06"}),
        ("nobody", None, None, set()),
        (None, True, None, {"c01", "c04", "c07"}),  # ended and future plans do not count
        (None, False, None, {"c02", "c03", "c05", "c06", "c08", "c09"}),
        (None, None, False, {"c03", "c06"}),
        (None, None, True, {"c01", "c02", "c04", "c05", "c07", "c08", "c09"}),
        ("acme", None, True, {"c01", "c02"}),
        (None, True, True, {"c01", "c04", "c07"}),
        (None, False, False, {"c03", "c06"}),
        ("acme", True, True, {"c01"}),
        ("acme", False, True, {"c02"}),
    ]
    for search, has_plan, enabled, expected in cases:
        assert matching(search, has_plan, enabled) == expected  # the table says the same
        given = {"search": search, "hasPlan": has_plan, "enabled": enabled}
        filter = {k: v for k, v in given.items() if v is not None}
        page = await one_page(gql, CUSTOMERS, "customers", {"filter": filter})
        got = [edge["node"]["customerId"] for edge in page["edges"]]
        assert len(got) == len(set(got)), filter
        assert set(got) == expected, filter
    # Filtered and ordered, in pages of two.
    for filter, order in [
        ({"enabled": True}, {"field": "CURRENT_TOTAL", "direction": "DESC"}),
        ({"hasPlan": False}, {"field": "NAME", "direction": "ASC"}),
        ({"search": "e", "enabled": True}, {"field": "CREATED_AT", "direction": "DESC"}),
    ]:
        wanted = matching(filter.get("search"), filter.get("hasPlan"), filter.get("enabled"))
        rows = [n for n in everyone if n["customerId"] in wanted]
        walked = await walk(gql, CUSTOMERS, "customers", {"filter": filter, "orderBy": order})
        key = CUSTOMER_KEYS[order["field"]]
        assert ids(walked) == sorted_by(rows, key, order["direction"] == "DESC"), (filter, order)


async def test_search_matches_like_wildcards_literally(gql: GraphQLClient) -> None:
    people = [
        ("p1", "50% off", None),
        ("p2", "50 off", None),
        ("p3", "a_b", None),
        ("p4", "axb", None),
        ("p5", "back\\slash", None),
        ("p6", "backslash", None),
        ("p7", "Plain", "Under_Score@x.example"),
    ]
    for customer_id, name, email in people:
        created = await gql(
            CREATE, {"input": {"customerId": customer_id, "name": name, "email": email}}
        )
        assert created["createCustomer"]["__typename"] == "Customer", created
    for search, expected in [
        ("%", {"p1"}),
        ("50%", {"p1"}),
        ("0%_", set()),
        ("_", {"p3", "p7"}),
        ("a_b", {"p3"}),
        ("\\", {"p5"}),
        ("k\\s", {"p5"}),
        ("\\%", set()),
        ("UNDER_score", {"p7"}),
        ("P", {c for c, _, _ in people}),  # every customerId, any case
    ]:
        page = await one_page(gql, CUSTOMERS, "customers", {"filter": {"search": search}})
        assert {e["node"]["customerId"] for e in page["edges"]} == expected, search


async def test_a_cursor_belongs_to_its_order(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> None:
    await seed_customers(gql, account, session_factory)

    async def cursor(order: dict[str, str] | None) -> str:
        page = (await gql(CUSTOMERS, {"first": 2, "orderBy": order}))["customers"]
        return str(page["pageInfo"]["endCursor"])

    orders: list[dict[str, str] | None] = [
        None,
        {"field": "NAME", "direction": "ASC"},
        {"field": "NAME", "direction": "DESC"},
        {"field": "CURRENT_TOTAL", "direction": "ASC"},
        {"field": "CREATED_AT", "direction": "DESC"},
    ]
    made = {json.dumps(order): await cursor(order) for order in orders}
    for made_under, after in made.items():
        for used_under in orders:
            variables = {"first": 2, "after": after, "orderBy": used_under}
            if json.dumps(used_under) == made_under:
                await gql(CUSTOMERS, variables)
                continue
            errors = await gql.errors(CUSTOMERS, variables)
            assert errors[0]["extensions"] == {"code": "VALIDATION_ERROR", "field": "after"}
            assert "another order" in errors[0]["message"], (made_under, used_under)
    # The default order, asked for by name, is the same order: its cursors carry over.
    explicit = {"field": "CREATED_AT", "direction": "ASC"}
    await gql(CUSTOMERS, {"first": 2, "after": made["null"], "orderBy": explicit})
    # An invoices cursor is not a customers one.
    invoices = await gql(INVOICES, {"first": 1, "orderBy": {"field": "TOTAL"}})
    assert invoices["invoices"]["edges"]
    other = invoices["invoices"]["pageInfo"]["endCursor"]
    errors = await gql.errors(
        CUSTOMERS, {"after": other, "orderBy": {"field": "CURRENT_TOTAL", "direction": "ASC"}}
    )
    assert errors[0]["extensions"]["code"] == "VALIDATION_ERROR"


def _b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode()


async def test_hostile_input_is_refused_not_a_500(gql: GraphQLClient, account: TestAccount) -> None:
    await gql(CREATE, {"input": {"customerId": "x1", "name": "X"}})
    long = await gql.errors(CUSTOMERS, {"filter": {"search": "a" * 10_000}})
    assert long[0]["extensions"] == {"code": "VALIDATION_ERROR", "field": "filter.search"}
    for bad in ("a\x00b", "\ud800"):
        # As JSON text: "\u0000" and a lone "\ud800" (httpx would not encode the latter).
        body = json.dumps({"query": CUSTOMERS, "variables": {"filter": {"search": bad}}})
        response = await gql.http.post(
            "/graphql",
            content=body,
            headers={"X-API-Key": account.admin_key, "Content-Type": "application/json"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["errors"][0]["extensions"]["code"] == "BAD_INPUT"
    # Cursors this API never made: refused with the same words, whatever is inside.
    row = str(uuid.uuid4())
    forged = [
        "!!!",
        "x" * 10_000,
        _b64("not|a-cursor"),
        _b64(f"2026-01-01T00:00:00|{row}"),  # a time with no offset
        _b64(json.dumps(["customers:NAME:ASC", "a\x00b", row])),
        _b64(json.dumps(["customers:NAME:ASC", "a" * 5_000, row])),
        _b64(json.dumps(["customers:NAME:ASC", 5, row])),
        _b64(json.dumps(["customers:NAME:ASC", "a", "not-a-uuid"])),
        _b64(json.dumps(["customers:CURRENT_TOTAL:ASC", "NaN", row])),
        _b64(json.dumps(["customers:CURRENT_TOTAL:ASC", "1e999999999", row])),
        _b64(json.dumps(["customers:CURRENT_TOTAL:ASC", "twelve", row])),
        _b64(json.dumps(["customers:CREATED_AT:DESC", "yesterday", row])),
        _b64(json.dumps({"o": "customers:NAME:ASC"})),
        _b64("[1, 2"),
        base64.urlsafe_b64encode(b"[\xff\xfe]").decode(),  # not UTF-8
        _b64("[" * 3_000 + "]" * 3_000),
        _b64(f"0001-01-01T00:00:00+05:00|{row}"),
        _b64(json.dumps(["customers:CREATED_AT:DESC", "0001-01-01T00:00:00+05:00", row])),
    ]
    orders = [
        {"field": "NAME", "direction": "ASC"},
        {"field": "CURRENT_TOTAL", "direction": "ASC"},
        {"field": "CREATED_AT", "direction": "DESC"},
        None,
    ]
    for after in forged:
        for order in orders:
            errors = await gql.errors(CUSTOMERS, {"after": after, "orderBy": order})
            assert errors[0]["extensions"]["code"] == "VALIDATION_ERROR", (after, order)
    unknown = await gql.errors(CUSTOMERS, {"orderBy": {"field": "EMAIL"}})
    assert unknown  # a GraphQL validation error, not a 500
    # And the list still answers.
    assert (await one_page(gql, CUSTOMERS, "customers", {}))["edges"]


async def test_a_big_total_sorts_exactly(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> None:
    """Totals past a float's precision keep their order, and their cursors their value."""
    now = datetime.now(UTC)
    totals = ["12345678901234567890.01", "12345678901234567890.02", "12345678901234567890.01"]
    for n, total in enumerate(totals):
        await gql(CREATE, {"input": {"customerId": f"b{n}"}})
        async with unit_of_work(session_factory) as session:
            await session.execute(
                insert(Invoice),
                [
                    _invoice(
                        account.account_id,
                        f"b{n}",
                        now - timedelta(days=1),
                        now + timedelta(days=1),
                        InvoiceStatus.OPEN,
                        total,
                    )
                ],
            )
    everyone = [e["node"] for e in (await one_page(gql, CUSTOMERS, "customers", {}))["edges"]]
    exact = {f"b{n}": Decimal(t) for n, t in enumerate(totals)}
    for direction in ("ASC", "DESC"):
        order = {"field": "CURRENT_TOTAL", "direction": direction}
        walked = await walk(gql, CUSTOMERS, "customers", {"orderBy": order}, size=1)
        expected = sorted_by(everyone, lambda n: exact[n["customerId"]], direction == "DESC")
        assert ids(walked) == expected


# --- invoices -------------------------------------------------------------------------------


MONTHS = [datetime(2026, m, 1, tzinfo=UTC) for m in range(1, 8)]
STATUSES = [
    InvoiceStatus.PAID,
    InvoiceStatus.FINALIZED,
    InvoiceStatus.OPEN,
    InvoiceStatus.VOID,
    InvoiceStatus.GRACE,
    InvoiceStatus.UNCOLLECTIBLE,
]
TOTALS = ["10.00", "25.50", "10", "0", "99.99", "25.5", "0.00"]


async def seed_invoices(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> list[dict[str, Any]]:
    """i1 Jan-Jun, i2 Jan-Apr, i3 Mar-Jun: equal period starts and equal totals across
    customers. Returns every invoice as the API shows it."""
    spans = {"i1": range(0, 6), "i2": range(0, 4), "i3": range(2, 6)}
    rows = []
    for n, (customer, months) in enumerate(spans.items()):
        await gql(CREATE, {"input": {"customerId": customer}})
        for m in months:
            k = n * 7 + m
            rows.append(
                _invoice(
                    account.account_id,
                    customer,
                    MONTHS[m],
                    MONTHS[m + 1],
                    STATUSES[k % len(STATUSES)],
                    TOTALS[k % len(TOTALS)],
                )
            )
    async with unit_of_work(session_factory) as session:
        await session.execute(insert(Invoice), rows)
    everything = [e["node"] for e in (await one_page(gql, INVOICES, "invoices", {}))["edges"]]
    assert len(everything) == len(rows) == 14
    return everything


INVOICE_KEYS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "PERIOD_START": lambda n: when(n["periodStart"]),
    "TOTAL": lambda n: Decimal(n["total"]),
}


async def test_invoices_every_order_both_ways_in_pages_of_two(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> None:
    everything = await seed_invoices(gql, account, session_factory)
    assert len({n["total"] for n in everything}) < len(everything)  # ties in totals
    for field, key in INVOICE_KEYS.items():
        for direction in ("ASC", "DESC"):
            order = {"field": field, "direction": direction}
            walked = await walk(gql, INVOICES, "invoices", {"orderBy": order})
            assert ids(walked) == sorted_by(everything, key, direction == "DESC"), order
    # The default stays newest period first, and its cursors are those of PERIOD_START DESC.
    default = await walk(gql, INVOICES, "invoices", {})
    assert ids(default) == sorted_by(everything, INVOICE_KEYS["PERIOD_START"], True)
    first = (await gql(INVOICES, {"first": 3}))["invoices"]
    same = (await gql(INVOICES, {"first": 3, "orderBy": {}}))["invoices"]
    assert first == same
    # One customer's invoices, as before: by the old argument or the filter.
    for variables in ({"customerId": "i2"}, {"filter": {"customerId": "i2"}}):
        walked = await walk(gql, INVOICES, "invoices", variables)
        expected = [n for n in everything if n["customerId"] == "i2"]
        assert ids(walked) == sorted_by(expected, INVOICE_KEYS["PERIOD_START"], True)


async def test_invoices_filters_alone_and_combined(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> None:
    everything = await seed_invoices(gql, account, session_factory)
    march, may = "2026-03-01T00:00:00+00:00", "2026-05-01T02:00:00+02:00"  # = 00:00 UTC

    def matching(
        status: str | None = None,
        customer: str | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> list[dict[str, Any]]:
        return [
            n
            for n in everything
            if (status is None or n["status"] == status)
            and (customer is None or n["customerId"] == customer)
            and (start is None or when(n["periodStart"]) >= when(start))
            and (end is None or when(n["periodStart"]) < when(end))
        ]

    cases: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = [
        ({"filter": {"status": "PAID"}}, {"status": "PAID"}, {}),
        ({"filter": {"customerId": "i3"}}, {"customer": "i3"}, {}),
        ({"filter": {"periodStartFrom": march}}, {"start": march}, {}),
        ({"filter": {"periodStartTo": may}}, {"end": may}, {}),
        (
            {"filter": {"periodStartFrom": march, "periodStartTo": may}},
            {"start": march, "end": may},
            {},
        ),
        (
            {"filter": {"periodStartFrom": march, "periodStartTo": may, "customerId": "i1"}},
            {"start": march, "end": may, "customer": "i1"},
            {"field": "TOTAL", "direction": "DESC"},
        ),
        (
            {"filter": {"status": "OPEN", "periodStartFrom": march}},
            {"status": "OPEN", "start": march},
            {"field": "TOTAL", "direction": "ASC"},
        ),
        # The old arguments still work, and hold together with the filter's.
        ({"status": "VOID"}, {"status": "VOID"}, {}),
        (
            {"customerId": "i1", "filter": {"status": "PAID"}},
            {"customer": "i1", "status": "PAID"},
            {},
        ),
        ({"customerId": "i1", "filter": {"customerId": "i2"}}, {"customer": "nobody"}, {}),
        ({"filter": {"periodStartFrom": may, "periodStartTo": may}}, {"customer": "nobody"}, {}),
    ]
    for variables, wanted, order in cases:
        expected = matching(**wanted)
        walked = await walk(gql, INVOICES, "invoices", {**variables, "orderBy": order or None})
        field, descending = order.get("field", "PERIOD_START"), order.get("direction") != "ASC"
        assert ids(walked) == sorted_by(expected, INVOICE_KEYS[field], descending), variables
    assert matching(status="PAID") and matching(start=march, end=may)  # the cases select rows

    naive = await gql.errors(INVOICES, {"filter": {"periodStartFrom": "2026-03-01T00:00:00"}})
    assert naive[0]["extensions"]["code"] == "BAD_INPUT"
    backwards = await gql.errors(
        INVOICES, {"filter": {"periodStartFrom": may, "periodStartTo": march}}
    )
    assert backwards[0]["extensions"] == {
        "code": "VALIDATION_ERROR",
        "field": "filter.periodStartTo",
    }


async def test_invoice_cursors_belong_to_their_order(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> None:
    await seed_invoices(gql, account, session_factory)
    orders: list[dict[str, str] | None] = [
        None,
        {"field": "PERIOD_START", "direction": "ASC"},
        {"field": "TOTAL", "direction": "ASC"},
        {"field": "TOTAL", "direction": "DESC"},
    ]
    made = {}
    for order in orders:
        page = (await gql(INVOICES, {"first": 2, "orderBy": order}))["invoices"]
        made[json.dumps(order)] = page["pageInfo"]["endCursor"]
    for made_under, after in made.items():
        for used_under in orders:
            variables = {"first": 2, "after": after, "orderBy": used_under}
            if json.dumps(used_under) == made_under:
                await gql(INVOICES, variables)
            else:
                errors = await gql.errors(INVOICES, variables)
                assert errors[0]["extensions"] == {"code": "VALIDATION_ERROR", "field": "after"}
    customers = (await gql(CUSTOMERS, {"first": 1, "orderBy": {"field": "NAME"}}))["customers"]
    errors = await gql.errors(
        INVOICES, {"after": customers["pageInfo"]["endCursor"], "orderBy": {"field": "TOTAL"}}
    )
    assert errors[0]["extensions"]["code"] == "VALIDATION_ERROR"


async def test_a_session_token_lists_only_its_customers_invoices(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    session_factory: SessionFactory,
) -> None:
    everything = await seed_invoices(gql, account, session_factory)
    issued = await gql(
        """mutation { createCustomerSession(customerId: "i1") {
        __typename ... on CustomerSession { token } } }"""
    )
    token = issued["createCustomerSession"]["token"]

    async def as_customer(variables: dict[str, Any]) -> dict[str, Any]:
        response = await http.post(
            "/graphql",
            json={"query": INVOICES, "variables": variables},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    mine = [n for n in everything if n["customerId"] == "i1"]
    order = {"field": "TOTAL", "direction": "DESC"}
    for variables in (
        {"orderBy": order},
        {"customerId": "i1", "orderBy": order},
        {"filter": {"customerId": "i1"}, "orderBy": order},
    ):
        body = await as_customer({**variables, "first": 100})
        got = [e["node"] for e in body["data"]["invoices"]["edges"]]
        assert ids(got) == sorted_by(mine, INVOICE_KEYS["TOTAL"], True), variables
    for variables in (
        {"customerId": "i2"},
        {"filter": {"customerId": "i2"}},
        {"customerId": "i1", "filter": {"customerId": "i2"}},
    ):
        body = await as_customer(variables)
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", variables
        assert body["data"] is None
    response = await http.post(
        "/graphql",
        json={"query": CUSTOMERS, "variables": {"filter": {"search": "i"}}},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
