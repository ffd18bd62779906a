"""Payments through Stripe, end to end: a real `meterflow serve` and `meterflow worker`, the real
`stripe` SDK pointed at a local fake Stripe (tests/fake_stripe.py, METERFLOW_STRIPE_API_BASE),
webhooks signed exactly as Stripe signs them, and live invoice updates over a WebSocket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from meterflow.db import SessionFactory
from tests.client import GraphQLClient, TestAccount
from tests.conftest import ROOT
from tests.fake_stripe import FakeStripe, sign
from tests.helpers import create_meter, ingest, until
from tests.test_billing_api import assign, make_plan
from tests.ws import connect

SECRET_KEY = "sk_test_meterflow_0123456789"
WEBHOOK_SECRET = "whsec_meterflowtests0123456789"

CONNECT = """mutation($input: ConnectStripeInput!) { connectStripe(input: $input) {
    __typename
    ... on StripeConnection { connected keyLast4 webhookPath collectionMethod daysUntilDue }
    ... on ValidationError { field message } } }"""
INVOICE = """query($c: String!, $s: InvoiceStatus) { invoices(customerId: $c, status: $s) {
    edges { node { id status total creditsApplied
      payment { provider externalId status hostedInvoiceUrl collectionMethod attempts lastError }
    } } } }"""
FINALIZE = """mutation($id: ID!) { finalizeInvoice(id: $id) { __typename
    ... on Invoice { id status total } ... on Error { message } } }"""
CURRENT = """query($c: String!) { currentInvoice(customerId: $c) { id total } }"""


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as stripe:
        yield stripe


@pytest.fixture(scope="module")
def stripe_worker(
    server_env: dict[str, str], fake: FakeStripe
) -> Iterator[subprocess.Popen[bytes]]:
    """A worker that talks to the fake Stripe, as production talks to Stripe."""
    env = {**server_env, "METERFLOW_STRIPE_API_BASE": fake.url}
    process = subprocess.Popen([sys.executable, "-m", "meterflow.cli", "worker"], env=env, cwd=ROOT)
    yield process
    process.terminate()
    process.wait(15)


async def connect_stripe(gql: GraphQLClient, **extra: Any) -> dict[str, Any]:
    answer = await gql(
        CONNECT,
        {"input": {"secretKey": SECRET_KEY, "webhookSecret": WEBHOOK_SECRET, **extra}},
    )
    return answer["connectStripe"]  # type: ignore[no-any-return]


async def post_event(
    http: httpx.AsyncClient,
    account: TestAccount,
    event: dict[str, Any],
    *,
    secret: str = WEBHOOK_SECRET,
    timestamp: int | None = None,
) -> httpx.Response:
    body = json.dumps(event).encode()
    return await http.post(
        f"/webhooks/stripe/{account.account_id}",
        content=body,
        headers={
            "Stripe-Signature": sign(body, secret, timestamp),
            "Content-Type": "application/json",
        },
    )


async def stripe_customer_with_card(fake: FakeStripe, name: str) -> str:
    """A customer that already exists in Stripe with a card on file (created the way a
    company's checkout would, outside meterflow)."""
    async with httpx.AsyncClient(base_url=fake.url) as client:
        response = await client.post(
            "/v1/customers", data={"name": name}, headers={"Authorization": f"Bearer {SECRET_KEY}"}
        )
    customer_id = str(response.json()["id"])
    fake.set_payment_method(customer_id)
    return customer_id


async def api_monetization(gql: GraphQLClient, customer: str) -> None:
    """Amberflo's API-monetization guide: $5 per 1,000 calls, the first 5,000 free a month."""
    await create_meter(gql, "ApiCalls")
    plan = await make_plan(
        gql,
        [
            {
                "meterApiName": "ApiCalls",
                "priceModel": {"type": "package", "packageSize": 1000, "packagePrice": "5.00"},
                "includedUnits": "5000",
            }
        ],
    )
    await assign(gql, customer, plan)


def calls(customer: str, count: int, each: int) -> list[dict[str, Any]]:
    millis = int((datetime.now(UTC) - timedelta(seconds=5)).timestamp() * 1000)
    return [
        {
            "meterApiName": "ApiCalls",
            "customerId": customer,
            "meterValue": each,
            "meterTimeInMillis": millis,
            "uniqueId": f"{customer}-{i}",
        }
        for i in range(count)
    ]


async def invoice_of(gql: GraphQLClient, customer: str) -> dict[str, Any]:
    edges = (await gql(INVOICE, {"c": customer}))["invoices"]["edges"]
    return edges[0]["node"]  # type: ignore[no-any-return]


async def test_api_monetization_invoice_is_charged_synced_and_paid_live(
    server: str,
    gql: GraphQLClient,
    http: httpx.AsyncClient,
    account: TestAccount,
    fake: FakeStripe,
    stripe_worker: subprocess.Popen[bytes],
    session_factory: SessionFactory,
) -> None:
    connection = await connect_stripe(gql)
    assert connection == {
        "__typename": "StripeConnection",
        "connected": True,
        "keyLast4": SECRET_KEY[-4:],
        "webhookPath": f"/webhooks/stripe/{account.account_id}",
        "collectionMethod": "CHARGE_AUTOMATICALLY",
        "daysUntilDue": 30,
    }
    await api_monetization(gql, "acme")
    stripe_id = await stripe_customer_with_card(fake, "Acme")
    updated = await gql(
        """mutation($id: String!) { updateCustomer(input: {customerId: "acme",
        stripeCustomerId: $id}) { ... on Customer { stripeCustomerId } } }""",
        {"id": stripe_id},
    )
    assert updated["updateCustomer"]["stripeCustomerId"] == stripe_id
    # 13,000 calls: 5,000 free, then 8 blocks of 1,000 at $5 = $40.00 (by hand).
    await ingest(gql, calls("acme", 13, 1000))
    opened = (await gql(CURRENT, {"c": "acme"}))["currentInvoice"]
    final = (await gql(FINALIZE, {"id": opened["id"]}))["finalizeInvoice"]
    assert (final["__typename"], final["total"]) == ("Invoice", "40.00"), final

    async def synced() -> dict[str, Any] | None:
        node = await invoice_of(gql, "acme")
        payment = node["payment"]
        return node if payment and payment["hostedInvoiceUrl"] else None

    node = await until(synced)
    payment = node["payment"]
    assert payment["provider"] == "stripe"
    assert payment["status"] == "PENDING"
    assert payment["collectionMethod"] == "CHARGE_AUTOMATICALLY"
    sent = fake.invoice(payment["externalId"])
    assert sent["customer"] == stripe_id  # the linked customer: no second one was created
    assert len(fake.customers()) == 1
    assert sent["collection_method"] == "charge_automatically"
    assert sent["currency"] == "usd"
    assert sent["metadata"]["meterflow_invoice_id"] == opened["id"]
    assert sent["status"] == "open"
    assert sum(item["amount"] for item in fake.items(sent["id"])) == 4000 == sent["total"]
    # Every POST carried an Idempotency-Key derived from the invoice and the step.
    posts = [p for p in fake.posts("/v1/invoice") if opened["id"] in (p.idempotency_key or "")]
    assert {p.idempotency_key for p in posts} == {
        f"meterflow:invoice:{opened['id']}:invoice",
        f"meterflow:invoice:{opened['id']}:item:0",
        f"meterflow:invoice:{opened['id']}:finalize",
    }

    paid = fake.mark_paid(sent["id"])
    async with connect(server, {"apiKey": account.admin_key}) as ws:
        await ws.start('subscription { invoiceUpdated(customerId: "acme") { id status total } }')
        first = await ws.data()
        assert first["invoiceUpdated"]["status"] == "FINALIZED"  # the current state first
        response = await post_event(http, account, paid)
        assert (response.status_code, response.json()) == (200, {"received": "ok"})
        live = await ws.data()
        assert live["invoiceUpdated"] == {"id": opened["id"], "status": "PAID", "total": "40.00"}
    node = await invoice_of(gql, "acme")
    assert (node["status"], node["payment"]["status"]) == ("PAID", "PAID")

    # Stripe delivers again (it retries until it sees a 2xx): nothing changes.
    again = await post_event(http, account, paid)
    assert (again.status_code, again.json()) == (200, {"received": "replay"})
    async with session_factory() as session:
        handled = await session.scalar(
            text("SELECT count(*) FROM stripe_events WHERE account_id = :a"),
            {"a": account.account_id},
        )
    assert handled == 1


async def test_forged_stale_and_hostile_webhooks_change_nothing(
    http: httpx.AsyncClient, gql: GraphQLClient, account: TestAccount, fake: FakeStripe
) -> None:
    await connect_stripe(gql)
    event = fake.event("invoice.paid", {"id": "in_forged", "object": "invoice", "metadata": {}})
    body = json.dumps(event).encode()
    url = f"/webhooks/stripe/{account.account_id}"
    cases = {
        "no signature": {},
        "wrong secret": {"Stripe-Signature": sign(body, "whsec_somebodyelse0000")},
        "stale": {"Stripe-Signature": sign(body, WEBHOOK_SECRET, int(time.time()) - 400)},
        "garbage": {"Stripe-Signature": "t=abc,v1=zz"},
        "NUL": {"Stripe-Signature": "t=1,v1=\x00"},
    }
    for name, headers in cases.items():
        try:
            response = await http.post(url, content=body, headers=headers)
        except httpx.LocalProtocolError:
            continue  # the client itself refuses to send this header: nothing reaches us
        assert response.status_code == 400, (name, response.text)
    tampered = body.replace(b"in_forged", b"in_forgeD")
    response = await http.post(
        url, content=tampered, headers={"Stripe-Signature": sign(body, WEBHOOK_SECRET)}
    )
    assert response.status_code == 400
    assert (await http.post("/webhooks/stripe/not-a-uuid", content=body)).status_code == 404
    unknown = "/webhooks/stripe/00000000-0000-4000-8000-000000000000"
    assert (await http.post(unknown, content=body)).status_code == 404
    # Signed, but hostile inside: the answer is a 4xx, never a 500.
    for hostile in (
        b'{"id": "evt_\\u0000", "type": "invoice.paid", "data": {"object": {}}}',
        b'{"id": "evt_\\ud800", "type": "invoice.paid", "data": {"object": {}}}',
        b'{"id": 1e400, "type": "invoice.paid"}',
        b"[" * 100_000 + b"]" * 100_000,
        b"\xff\xfe not json",
        b'{"type": "invoice.paid"}',
    ):
        response = await http.post(
            url, content=hostile, headers={"Stripe-Signature": sign(hostile, WEBHOOK_SECRET)}
        )
        assert response.status_code == 400, (hostile[:40], response.text)
    # An event type meterflow does not use: 200, recorded, ignored.
    other = fake.event("customer.created", {"id": "cus_x", "object": "customer"})
    response = await post_event(http, account, other)
    assert (response.status_code, response.json()) == (200, {"received": "ok"})


async def test_connect_validates_and_seals_and_disconnect_forgets(
    gql: GraphQLClient, account: TestAccount, session_factory: SessionFactory
) -> None:
    bad = await gql(
        CONNECT, {"input": {"secretKey": "pk_test_public", "webhookSecret": WEBHOOK_SECRET}}
    )
    assert bad["connectStripe"]["field"] == "secretKey"
    bad = await gql(CONNECT, {"input": {"secretKey": SECRET_KEY, "webhookSecret": "secret"}})
    assert bad["connectStripe"]["field"] == "webhookSecret"
    bad = await gql(
        CONNECT,
        {"input": {"secretKey": SECRET_KEY, "webhookSecret": WEBHOOK_SECRET, "daysUntilDue": 0}},
    )
    assert bad["connectStripe"]["field"] == "daysUntilDue"
    done = await connect_stripe(gql, collectionMethod="SEND_INVOICE", daysUntilDue=14)
    assert (done["collectionMethod"], done["daysUntilDue"]) == ("SEND_INVOICE", 14)
    async with session_factory() as session:
        stored = (
            await session.execute(
                text(
                    "SELECT secret_key, webhook_secret FROM stripe_connections "
                    "WHERE account_id = :a"
                ),
                {"a": account.account_id},
            )
        ).one()
    assert all(value.startswith("enc:v1:") for value in stored)
    assert SECRET_KEY not in "".join(stored) and WEBHOOK_SECRET not in "".join(stored)
    shown = await gql("{ account { stripe { connected keyLast4 collectionMethod } } }")
    assert shown["account"]["stripe"] == {
        "connected": True,
        "keyLast4": SECRET_KEY[-4:],
        "collectionMethod": "SEND_INVOICE",
    }
    gone = await gql("mutation { disconnectStripe { connected keyLast4 } }")
    assert gone["disconnectStripe"] == {"connected": False, "keyLast4": None}
    shown = await gql("{ account { stripe { connected webhookPath } } }")
    assert shown["account"]["stripe"]["connected"] is False


async def test_one_off_top_up_paid_on_the_hosted_page_grants_once(
    http: httpx.AsyncClient,
    gql: GraphQLClient,
    account: TestAccount,
    fake: FakeStripe,
    stripe_worker: subprocess.Popen[bytes],
) -> None:
    await connect_stripe(gql)
    await gql(
        """mutation { createCustomer(input: {customerId: "buyer", name: "Buyer",
        email: "buyer@example.com"}) { __typename } }"""
    )
    created = await gql(
        """mutation { createTopUp(customerId: "buyer", amount: "25", currency: "USD") {
        __typename ... on TopUp { id status amount } ... on Error { message } } }"""
    )
    top_up = created["createTopUp"]
    assert (top_up["__typename"], top_up["status"], top_up["amount"]) == (
        "TopUp",
        "PENDING",
        "25.00",
    )
    twice = await gql(
        """mutation { createTopUp(customerId: "buyer", amount: "5", currency: "USD") {
        __typename } }"""
    )
    assert twice["createTopUp"]["__typename"] == "ConflictError"  # one pending per wallet
    listed = 'query { topUps(customerId: "buyer") { id status externalId hostedInvoiceUrl } }'

    async def sent() -> dict[str, Any] | None:
        rows = (await gql(listed))["topUps"]
        return rows[0] if rows and rows[0]["hostedInvoiceUrl"] else None

    row = await until(sent)
    invoice = fake.invoice(row["externalId"])
    # No card on file: an invoice the customer pays on Stripe's hosted page.
    assert invoice["collection_method"] == "send_invoice"
    assert invoice["metadata"]["meterflow_top_up_id"] == top_up["id"]
    assert invoice["total"] == 2500
    customer = fake.customer(invoice["customer"])
    assert (customer["name"], customer["email"]) == ("Buyer", "buyer@example.com")
    assert customer["metadata"]["meterflow_customer_id"] == "buyer"
    paid = fake.mark_paid(invoice["id"])
    assert (await post_event(http, account, paid)).status_code == 200
    assert (await post_event(http, account, paid)).json() == {"received": "replay"}
    wallet = await gql(
        """{ wallet(customerId: "buyer", currency: "USD") { balance
        ledger { edges { node { kind amount reason } } } } }"""
    )
    assert wallet["wallet"]["balance"] == "25.00"
    lines = [e["node"] for e in wallet["wallet"]["ledger"]["edges"]]
    assert lines == [
        {"kind": "GRANT", "amount": "25.00", "reason": f"Top-up {invoice['id']} (Stripe)"}
    ]
    assert (await gql(listed))["topUps"][0]["status"] == "PAID"


async def test_customer_token_reads_its_payment_not_the_connection(
    http: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    await gql('mutation { createCustomer(input: {customerId: "viewer"}) { __typename } }')
    token = (
        await gql(
            'mutation { createCustomerSession(customerId: "viewer") { ... on CustomerSession '
            "{ token } } }"
        )
    )["createCustomerSession"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    response = await http.post(
        "/graphql",
        json={"query": '{ topUps(customerId: "viewer") { id } }'},
        headers=headers,
    )
    assert response.json()["data"] == {"topUps": []}
    for query in (
        "{ account { stripe { connected } } }",
        '{ topUps(customerId: "someone-else") { id } }',
        'mutation { createTopUp(customerId: "viewer", amount: "5") { __typename } }',
    ):
        response = await http.post("/graphql", json={"query": query}, headers=headers)
        codes = [e["extensions"]["code"] for e in response.json()["errors"]]
        assert codes == ["FORBIDDEN"], (query, response.text)


async def test_hostile_payment_inputs_are_refused_by_field(
    http: httpx.AsyncClient, gql: GraphQLClient
) -> None:
    await connect_stripe(gql)
    await gql('mutation { createCustomer(input: {customerId: "h"}) { __typename } }')
    top_up = """mutation($a: Decimal!, $c: String) { createTopUp(customerId: "h", amount: $a,
        currency: $c) { __typename ... on ValidationError { field } } }"""
    for amount, currency, field in (
        ("1e400", "USD", "amount"),
        ("NaN", "USD", "amount"),
        ("-5", "USD", "amount"),
        ("0", "USD", "amount"),
        ("9.995", "USD", "amount"),
        ("10.5", "JPY", "amount"),
        ("10", "CREDITS", "currency"),
        ("10", "U$D", "currency"),
    ):
        answer = (await gql(top_up, {"a": amount, "c": currency}))["createTopUp"]
        assert answer == {"__typename": "ValidationError", "field": field}, (amount, currency)
    for variables in ({"a": "10", "c": "US\u0000D"}, {"a": "1", "c": "\ud800"}):
        response = await http.post(
            "/graphql",
            content=json.dumps({"query": top_up, "variables": variables}),
            headers={"X-API-Key": gql.key or "", "Content-Type": "application/json"},
        )
        assert 200 <= response.status_code < 500, response.text
        body = response.json()
        assert body.get("data") is None, body
        assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_INPUT"], body
    for stripe_id in ("cus_\u00e9", "sub_123", "cus_" + "a" * 300, "cus_1; DROP TABLE"):
        answer = await gql(
            """mutation($s: String!) { updateCustomer(input: {customerId: "h",
            stripeCustomerId: $s}) { __typename ... on ValidationError { field } } }""",
            {"s": stripe_id},
        )
        assert answer["updateCustomer"] == {
            "__typename": "ValidationError",
            "field": "stripeCustomerId",
        }
    auto = await gql(
        """mutation { setAutoTopUp(input: {customerId: "h", threshold: "1e400", amount: "5"}) {
        __typename ... on ValidationError { field } } }"""
    )
    assert auto["setAutoTopUp"] == {"__typename": "ValidationError", "field": "threshold"}
    missing = await gql(
        """mutation { setAutoTopUp(input: {customerId: "ghost", threshold: "1", amount: "5"}) {
        __typename } }"""
    )
    assert missing["setAutoTopUp"]["__typename"] == "NotFoundError"
    # Nothing was bought by any of it.
    assert (await gql('{ topUps(customerId: "h") { id } }'))["topUps"] == []


async def test_usage_that_drains_the_wallet_tops_it_up_through_the_worker(
    gql: GraphQLClient, fake: FakeStripe, stripe_worker: subprocess.Popen[bytes]
) -> None:
    await connect_stripe(gql)
    await create_meter(gql, "ApiCalls")
    plan = await make_plan(
        gql, [{"meterApiName": "ApiCalls", "priceModel": {"type": "per_unit", "unitPrice": "0.5"}}]
    )
    await assign(gql, "prepaid", plan)
    stripe_id = await stripe_customer_with_card(fake, "Prepaid Inc")
    await gql(
        """mutation($id: String!) { updateCustomer(input: {customerId: "prepaid",
        stripeCustomerId: $id}) { __typename } }""",
        {"id": stripe_id},
    )
    await gql(
        """mutation { grantCredits(input: {customerId: "prepaid", amount: "3"}) {
        __typename } }"""
    )
    rule = await gql(
        """mutation { setAutoTopUp(input: {customerId: "prepaid", threshold: "2",
        amount: "20"}) { __typename ... on AutoTopUp { currency threshold amount enabled } } }"""
    )
    assert rule["setAutoTopUp"] == {
        "__typename": "AutoTopUp",
        "currency": "USD",
        "threshold": "2.00",
        "amount": "20.00",
        "enabled": True,
    }
    # 4 calls at 0.50 draw 2.00 of the 3.00: 1.00 left, under the threshold.
    await ingest(gql, calls("prepaid", 4, 1))
    wallet = """{ wallet(customerId: "prepaid") { balance autoTopUp { threshold } } }"""

    async def topped_up() -> dict[str, Any] | None:
        shown = (await gql(wallet))["wallet"]
        return shown if shown["balance"] == "21.00" else None

    shown = await until(topped_up, within=30)
    assert shown["autoTopUp"] == {"threshold": "2.00"}
    rows = (await gql('{ topUps(customerId: "prepaid") { status automatic amount externalId } }'))[
        "topUps"
    ]
    assert [(r["status"], r["automatic"], r["amount"]) for r in rows] == [("PAID", True, "20.00")]
    sent = fake.invoice(rows[0]["externalId"])
    assert (sent["customer"], sent["collection_method"], sent["status"]) == (
        stripe_id,
        "charge_automatically",
        "paid",
    )
