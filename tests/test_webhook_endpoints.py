"""Account webhook endpoints end to end: a real server and worker, local receivers (the
development switch allows 127.0.0.1), every delivery verified with the real `standardwebhooks`
package the way a receiver in any language would verify it."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text
from standardwebhooks.webhooks import Webhook

from meterflow.db import SessionFactory, unit_of_work
from meterflow.errors import ValidationError
from meterflow.secretbox import SecretBox
from meterflow.services import customers, webhook_endpoints
from tests.client import GraphQLClient, TestAccount
from tests.conftest import ROOT, TEST_SECRET_KEY
from tests.helpers import create_meter, ingest, until
from tests.test_alerts import Receiver
from tests.test_billing_api import assign, make_plan

CREATE = """mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) {
    __typename
    ... on CreatedWebhookEndpoint { secret endpoint { id url eventTypes enabled } }
    ... on ValidationError { field message } } }"""
DELIVERIES = """query($e: ID, $s: String) { webhookDeliveries(endpointId: $e, status: $s) {
    edges { node { id eventId eventType status payload
      attempts { statusCode durationMs error } } } } }"""


@pytest.fixture(scope="module")
def hook_worker(server_env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **server_env,
        "METERFLOW_WEBHOOK_RETRY_BASE_SECONDS": "0.2",
        # Short, so a dead endpoint is disabled within the test; a receiver failing twice is
        # still well inside it.
        "METERFLOW_WEBHOOK_RETRY_WINDOW_SECONDS": "4",
    }
    process = subprocess.Popen([sys.executable, "-m", "meterflow.cli", "worker"], env=env, cwd=ROOT)
    yield process
    process.terminate()
    process.wait(15)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


async def endpoint(gql: GraphQLClient, url: str, types: list[str], **extra: Any) -> dict[str, Any]:
    made = (await gql(CREATE, {"input": {"url": url, "eventTypes": types, **extra}}))[
        "createWebhookEndpoint"
    ]
    assert made["__typename"] == "CreatedWebhookEndpoint", made
    return made  # type: ignore[no-any-return]


def calls(customer: str, value: int, unique_id: str) -> dict[str, Any]:
    return {
        "meterApiName": "calls",
        "customerId": customer,
        "meterValue": value,
        "meterTimeInMillis": int(time.time() * 1000) - 2000,
        "uniqueId": unique_id,
    }


def verified(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    """Every request the receiver got, verified as a Standard Webhooks receiver does."""
    hook = Webhook(secret)
    out = []
    for _, headers, body in receiver.requests:
        event = hook.verify(body, headers)
        assert event["id"] == headers["webhook-id"]
        out.append(event)
    return out


async def types_received(receiver: Receiver, secret: str, wanted: set[str]) -> list[dict[str, Any]]:
    async def arrived() -> list[dict[str, Any]] | None:
        events = verified(receiver, secret)
        return events if wanted <= {e["type"] for e in events} else None

    try:
        return await until(arrived, within=20)  # type: ignore[no-any-return]
    except AssertionError:
        got = sorted({e["type"] for e in verified(receiver, secret)})
        raise AssertionError(f"never received {sorted(wanted - set(got))} (got {got})") from None


async def test_billing_events_arrive_signed_and_verify(
    gql: GraphQLClient, receiver: Receiver, hook_worker: subprocess.Popen[bytes]
) -> None:
    made = await endpoint(gql, receiver.url, ["*"], description="billing system")
    secret = made["secret"]
    assert secret.startswith("whsec_")
    listed = (await gql("{ webhookEndpoints { id url eventTypes enabled } }"))["webhookEndpoints"]
    assert listed == [made["endpoint"]]  # the secret is never shown again
    await gql(
        """mutation { createCustomer(input: {customerId: "w1", name: "W One"}) {
        __typename } }"""
    )
    await gql(
        """mutation { updateCustomer(input: {customerId: "w1", email: "w1@example.com"}) {
        __typename } }"""
    )
    await create_meter(gql, "calls")
    plan = await make_plan(
        gql, [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "0.5"}}]
    )
    await assign(gql, "w2", plan)
    await gql('mutation { grantCredits(input: {customerId: "w2", amount: "1.25"}) { __typename } }')
    await ingest(
        gql,
        [calls("w2", 10, "e1")],
    )

    async def rated() -> bool:
        current = (await gql('{ currentInvoice(customerId: "w2") { id total } }'))["currentInvoice"]
        return current["total"] == "3.75"  # 10 x 0.50 - 1.25 of credits

    await until(rated)
    invoice_id = (await gql('{ currentInvoice(customerId: "w2") { id } }'))["currentInvoice"]["id"]
    await gql("mutation($id: ID!) { finalizeInvoice(id: $id) { __typename } }", {"id": invoice_id})
    await gql('mutation { deprecateMeter(meterApiName: "calls") { __typename } }')
    expected = {
        "customer.created",
        "customer.updated",
        "meter.activated",
        "plan.activated",
        "plan.assigned",
        "invoice.created",
        "credits.granted",
        "invoice.finalized",
        "meter.deprecated",
    }
    events = await types_received(receiver, secret, expected)
    assert "invoice.updated" not in {e["type"] for e in events}  # opt-in: "*" leaves it out
    by_type = {e["type"]: e for e in events}
    created = {
        e["data"]["customer"]["customerId"]: e["data"]["customer"]
        for e in events
        if e["type"] == "customer.created"
    }
    assert (created["w1"]["name"], created["w2"]["name"]) == ("W One", "w2")
    assert by_type["customer.updated"]["data"]["customer"]["email"] == "w1@example.com"
    assert by_type["credits.granted"]["data"]["grant"]["amount"] == "1.25"
    assert by_type["plan.assigned"]["data"]["assignment"]["planId"] == plan
    final = by_type["invoice.finalized"]["data"]["invoice"]
    assert (final["id"], final["status"], final["total"]) == (invoice_id, "FINALIZED", "3.75")
    assert [(line["units"], line["amount"]) for line in final["lines"]] == [("10", "5.00")]
    assert by_type["invoice.created"]["data"]["invoice"]["customerId"] == "w2"
    assert set(by_type["meter.deprecated"]["data"]["meter"]) >= {"meterApiName", "status"}
    for event in events:
        assert set(event) == {"id", "type", "createdAt", "data"}
        datetime.fromisoformat(event["createdAt"])


async def test_a_receiver_failing_twice_gets_the_event_on_the_third_try_with_the_same_id(
    gql: GraphQLClient, hook_worker: subprocess.Popen[bytes]
) -> None:
    flaky = Receiver(fail=2)
    try:
        made = await endpoint(gql, flaky.url, ["customer.created"])
        await gql('mutation { createCustomer(input: {customerId: "f1"}) { __typename } }')
        await until(lambda: _count(flaky, 3), within=20)
        ids = {headers["webhook-id"] for _, headers, _ in flaky.requests}
        assert len(ids) == 1
        [event] = {
            json.dumps(e, sort_keys=True): e for e in verified(flaky, made["secret"])
        }.values()
        assert event["data"]["customer"]["customerId"] == "f1"

        async def logged() -> dict[str, Any] | None:
            edges = (await gql(DELIVERIES, {"e": made["endpoint"]["id"]}))["webhookDeliveries"]
            node = edges["edges"][0]["node"] if edges["edges"] else None
            return node if node and node["status"] == "DELIVERED" else None

        node = await until(logged)
        assert [a["statusCode"] for a in node["attempts"]] == [500, 500, 200]
        assert [a["error"] for a in node["attempts"]] == ["http_500", "http_500", None]
        assert all(a["durationMs"] >= 0 for a in node["attempts"])
        assert node["eventId"] == event["id"] and node["eventType"] == "customer.created"
        assert node["payload"] == event
        # Replay: the same event id again, a new delivery in the log.
        replayed = await gql(
            "mutation($id: ID!) { replayWebhookDelivery(id: $id) { __typename "
            "... on WebhookDelivery { eventId status } } }",
            {"id": node["id"]},
        )
        assert replayed["replayWebhookDelivery"]["eventId"] == event["id"]
        await until(lambda: _count(flaky, 4), within=20)
        assert flaky.requests[-1][1]["webhook-id"] == event["id"]
    finally:
        flaky.close()


async def _count(receiver: Receiver, n: int) -> bool:
    return len(receiver.requests) >= n


async def test_a_rotation_sends_both_signatures(
    gql: GraphQLClient, receiver: Receiver, hook_worker: subprocess.Popen[bytes]
) -> None:
    made = await endpoint(gql, receiver.url, ["customer.created"])
    rotated = await gql(
        """mutation($id: ID!) { rotateWebhookEndpointSecret(id: $id) { __typename
        ... on CreatedWebhookEndpoint { secret endpoint { secretRotatedUntil } } } }""",
        {"id": made["endpoint"]["id"]},
    )
    new_secret = rotated["rotateWebhookEndpointSecret"]["secret"]
    assert new_secret != made["secret"]
    until_then = datetime.fromisoformat(
        rotated["rotateWebhookEndpointSecret"]["endpoint"]["secretRotatedUntil"]
    )
    assert 23 * 3600 < (until_then - datetime.now(UTC)).total_seconds() <= 24 * 3600
    await gql('mutation { createCustomer(input: {customerId: "r1"}) { __typename } }')
    await until(lambda: _count(receiver, 1))
    headers = receiver.requests[0][1]
    assert len(headers["webhook-signature"].split(" ")) == 2
    # A receiver still on the old secret and one already on the new one both verify.
    assert verified(receiver, made["secret"]) == verified(receiver, new_secret)


async def test_an_endpoint_failing_for_the_whole_window_is_disabled_and_that_is_told(
    gql: GraphQLClient, receiver: Receiver, hook_worker: subprocess.Popen[bytes]
) -> None:
    dead = Receiver(fail=10**9)
    try:
        watcher = await endpoint(gql, receiver.url, ["webhook_endpoint.disabled"])
        doomed = await endpoint(gql, dead.url, ["customer.created"], description="dead one")
        await gql('mutation { createCustomer(input: {customerId: "d1"}) { __typename } }')

        async def disabled() -> bool:
            rows = (await gql("{ webhookEndpoints { id enabled disabledAt } }"))["webhookEndpoints"]
            return any(r["id"] == doomed["endpoint"]["id"] and not r["enabled"] for r in rows)

        await until(disabled, within=30)
        [told] = await types_received(receiver, watcher["secret"], {"webhook_endpoint.disabled"})
        assert told["data"]["webhookEndpoint"]["id"] == doomed["endpoint"]["id"]
        assert told["data"]["webhookEndpoint"]["description"] == "dead one"
        failed = (await gql(DELIVERIES, {"e": doomed["endpoint"]["id"], "s": "FAILED"}))[
            "webhookDeliveries"
        ]["edges"]
        assert failed and len(failed[0]["node"]["attempts"]) >= 2
    finally:
        dead.close()


async def test_a_rolled_back_change_sends_nothing(
    gql: GraphQLClient,
    account: TestAccount,
    receiver: Receiver,
    session_factory: SessionFactory,
    hook_worker: subprocess.Popen[bytes],
) -> None:
    await endpoint(gql, receiver.url, ["*"])
    with pytest.raises(RuntimeError):
        async with unit_of_work(session_factory) as session:
            await customers.create_customer(
                session, account_id=account.account_id, customer_id="ghost", now=datetime.now(UTC)
            )
            raise RuntimeError("the rest of the change failed")
    await gql('mutation { createCustomer(input: {customerId: "real"}) { __typename } }')
    await until(lambda: _count(receiver, 1))
    await asyncio.sleep(1.0)  # time for a stray delivery of "ghost" to arrive, if one existed
    bodies = [json.loads(body) for _, _, body in receiver.requests]
    assert [b["data"]["customer"]["customerId"] for b in bodies] == ["real"]
    async with session_factory() as session:
        stored = await session.scalar(
            text("SELECT count(*) FROM webhook_events WHERE account_id = :a"),
            {"a": account.account_id},
        )
    assert stored == 1


async def test_endpoints_refuse_inside_addresses_without_the_development_switch(
    session_factory: SessionFactory, account: TestAccount
) -> None:
    async def evil(host: str, port: int) -> list[str]:
        """DNS as an attacker arranges it; an address literal resolves to itself."""
        try:
            return [str(ipaddress.ip_address(host.strip("[]")))]
        except ValueError:
            pass
        return {"evil.example": ["127.0.0.1"], "meta.example": ["169.254.169.254"]}.get(
            host, ["93.184.216.34"]
        )

    box = SecretBox(TEST_SECRET_KEY)
    for url in (
        "http://93.184.216.34/hook",  # plain http
        "https://127.0.0.1/hook",
        "https://evil.example/hook",  # a name that resolves inside
        "https://meta.example/latest",
        "https://10.0.0.8/hook",
        "https://user:pw@public.example/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://public.example/\x00",
    ):
        async with unit_of_work(session_factory) as session:
            with pytest.raises(ValidationError) as refused:
                await webhook_endpoints.create(
                    session,
                    account_id=account.account_id,
                    url=url,
                    types=["*"],
                    description=None,
                    balance_low_threshold=None,
                    box=box,
                    allow_private=False,
                    now=datetime.now(UTC),
                    resolve=evil,
                )
        assert refused.value.field == "url", url
    async with unit_of_work(session_factory) as session:
        made = await webhook_endpoints.create(
            session,
            account_id=account.account_id,
            url="https://public.example/hook",
            types=["invoice.paid", "invoice.updated"],
            description=None,
            balance_low_threshold=None,
            box=box,
            allow_private=False,
            now=datetime.now(UTC),
            resolve=evil,
        )
    assert made.endpoint.event_types == ["invoice.paid", "invoice.updated"]
    assert made.endpoint.url.startswith("enc:v1:") and made.secret.startswith("whsec_")


async def test_bad_endpoint_inputs_are_validation_errors(gql: GraphQLClient) -> None:
    for input_, field in (
        ({"url": "https://x.example", "eventTypes": []}, "eventTypes"),
        ({"url": "https://x.example", "eventTypes": ["invoice.exploded"]}, "eventTypes"),
        ({"url": "ftp://x.example", "eventTypes": ["*"]}, "url"),
        ({"url": "https://x.example/" + "a" * 3000, "eventTypes": ["*"]}, "url"),
        (
            {"url": "https://x.example", "eventTypes": ["*"], "balanceLowThreshold": "1e400"},
            "balanceLowThreshold",
        ),
    ):
        answer = (await gql(CREATE, {"input": input_}))["createWebhookEndpoint"]
        assert (answer["__typename"], answer["field"]) == ("ValidationError", field), input_
    missing = await gql(
        "mutation($id: ID!) { deleteWebhookEndpoint(id: $id) { __typename } }",
        {"id": str(uuid.uuid4())},
    )
    assert missing["deleteWebhookEndpoint"]["__typename"] == "NotFoundError"
    garbage = await gql('mutation { rotateWebhookEndpointSecret(id: "nope") { __typename } }')
    assert garbage["rotateWebhookEndpointSecret"]["__typename"] == "NotFoundError"


async def test_alerts_and_low_balances_reach_endpoints(
    gql: GraphQLClient, receiver: Receiver, hook_worker: subprocess.Popen[bytes]
) -> None:
    from tests.test_alerts import CREATE as CREATE_RULE

    made = await endpoint(
        gql,
        receiver.url,
        ["alert.fired", "wallet.balance_low", "invoice.updated"],
        balanceLowThreshold="2",
    )
    await create_meter(gql, "calls")
    plan = await make_plan(
        gql, [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "0.5"}}]
    )
    await assign(gql, "spender", plan)
    await gql(
        'mutation { grantCredits(input: {customerId: "spender", amount: "3"}) { __typename } }'
    )
    rule = await gql(
        CREATE_RULE,
        {
            "input": {
                "name": "more than 3 calls",
                "subject": "USAGE",
                "meterApiName": "calls",
                "condition": "GREATER_THAN",
                "threshold": "3",
                "range": "DAY",
                "channels": [{"type": "EMAIL", "target": "ops@example.com"}],
            }
        },
    )
    assert rule["createAlertRule"]["__typename"] == "AlertRule", rule
    # 4 calls: usage 4 > 3 fires; 2.00 of the 3.00 credits drawn: 1.00 < 2.00 is low.
    await ingest(
        gql,
        [calls("spender", 4, "s1")],
    )
    events = await types_received(
        receiver, made["secret"], {"alert.fired", "wallet.balance_low", "invoice.updated"}
    )
    by_type = {e["type"]: e for e in events}
    alert = by_type["alert.fired"]["data"]["alert"]
    assert (alert["ruleName"], alert["customerId"], alert["value"]) == (
        "more than 3 calls",
        "spender",
        "4",
    )
    # The alert as the API lists it: its rule for an admin key, FORBIDDEN for a session token.
    listed = (
        await gql('{ alertEvents(customerId: "spender") { name rule { name subject range } } }')
    )["alertEvents"]
    assert listed == [
        {
            "name": "more than 3 calls",
            "rule": {"name": "more than 3 calls", "subject": "USAGE", "range": "DAY"},
        }
    ]
    token = (
        await gql(
            'mutation { createCustomerSession(customerId: "spender") { ... on CustomerSession '
            "{ token } } }"
        )
    )["createCustomerSession"]["token"]
    refused = await gql.http.post(
        "/graphql",
        json={"query": '{ alertEvents(customerId: "spender") { name rule { name } } }'},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert [e["extensions"]["code"] for e in refused.json()["errors"]] == ["FORBIDDEN"]
    low = by_type["wallet.balance_low"]["data"]["wallet"]
    assert (low["customerId"], low["balance"], low["threshold"]) == ("spender", "1.00", "2")
    updated = by_type["invoice.updated"]["data"]["invoice"]
    assert (updated["subtotal"], updated["creditsApplied"], updated["total"]) == (
        "2.00",
        "2.00",
        "0.00",
    )
    # More usage below the threshold: no second balance_low (once per crossing), and no
    # second invoice.updated within the minute.
    await ingest(
        gql,
        [calls("spender", 1, "s2")],
    )

    async def rated() -> bool:
        current = (await gql('{ currentInvoice(customerId: "spender") { subtotal } }'))[
            "currentInvoice"
        ]
        return current["subtotal"] == "2.50"

    await until(rated)
    await asyncio.sleep(1.5)
    counts: dict[str, int] = {}
    for event in verified(receiver, made["secret"]):
        counts[event["type"]] = counts.get(event["type"], 0) + 1
    assert counts == {"alert.fired": 1, "wallet.balance_low": 1, "invoice.updated": 1}


async def test_payment_events_reach_endpoints(
    gql: GraphQLClient,
    account: TestAccount,
    receiver: Receiver,
    session_factory: SessionFactory,
    hook_worker: subprocess.Popen[bytes],
) -> None:
    """invoice.paid, invoice.payment_failed, invoice.voided and wallet.topped_up, from what
    Stripe's webhooks and a paid top-up change (the Stripe side itself is tested in
    tests/test_payment_sync.py)."""
    from meterflow.models import CollectionMethod
    from meterflow.services import stripe_connections, stripe_events, top_ups

    made = await endpoint(
        gql,
        receiver.url,
        ["invoice.paid", "invoice.payment_failed", "invoice.voided", "wallet.topped_up"],
    )
    await create_meter(gql, "calls")
    plan = await make_plan(
        gql, [{"meterApiName": "calls", "priceModel": {"type": "per_unit", "unitPrice": "1"}}]
    )
    now = datetime.now(UTC)
    async with unit_of_work(session_factory) as session:
        await stripe_connections.connect(
            session,
            account_id=account.account_id,
            secret_key="sk_test_webhookevents00",
            webhook_secret="whsec_webhookevents0000",
            collection_method=CollectionMethod.SEND_INVOICE,
            days_until_due=7,
            box=SecretBox(TEST_SECRET_KEY),
            now=now,
        )
    finalized = []
    for customer in ("payer", "voided"):
        await assign(gql, customer, plan)
        await ingest(
            gql,
            [calls(customer, 3, f"{customer}-1")],
        )
        invoice_id = (
            await gql(
                "query($c: String!) { currentInvoice(customerId: $c) { id } }", {"c": customer}
            )
        )["currentInvoice"]["id"]
        answer = await gql(
            "mutation($id: ID!) { finalizeInvoice(id: $id) { ... on Invoice { total } } }",
            {"id": invoice_id},
        )
        assert answer["finalizeInvoice"]["total"] == "3.00"
        finalized.append(invoice_id)

    def stripe(kind: str, invoice_id: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": f"evt_{uuid.uuid4().hex}",
            "type": kind,
            "data": {
                "object": {
                    "id": f"in_{invoice_id[:8]}",
                    "metadata": {"meterflow_invoice_id": invoice_id},
                    **extra,
                }
            },
        }

    async with unit_of_work(session_factory) as session:
        for event in (
            stripe("invoice.payment_failed", finalized[0], attempt_count=1),
            stripe("invoice.paid", finalized[0]),
            stripe("invoice.voided", finalized[1]),
        ):
            await stripe_events.handle(
                session, account_id=account.account_id, event=event, now=datetime.now(UTC)
            )
        top_up = await top_ups.create(
            session,
            account_id=account.account_id,
            customer_id="payer",
            amount=Decimal("10"),
            currency="USD",
            now=datetime.now(UTC),
        )
        await top_ups.mark_paid(
            session,
            account_id=account.account_id,
            top_up_id=top_up.id,
            external_id="in_topup",
            now=datetime.now(UTC),
        )
    try:
        events = await types_received(
            receiver,
            made["secret"],
            {"invoice.paid", "invoice.payment_failed", "invoice.voided", "wallet.topped_up"},
        )
    finally:
        async with unit_of_work(session_factory) as session:  # no later worker may sync them
            await session.execute(text("DELETE FROM outbox WHERE kind LIKE 'payment.%'"))
            await session.execute(text("DELETE FROM stripe_connections"))
    by_type = {e["type"]: e["data"] for e in events}
    assert by_type["invoice.payment_failed"]["invoice"]["id"] == finalized[0]
    assert by_type["invoice.paid"]["invoice"]["status"] == "PAID"
    voided = by_type["invoice.voided"]["invoice"]
    assert (voided["id"], voided["status"]) == (finalized[1], "VOID")
    topped = by_type["wallet.topped_up"]
    assert (topped["topUp"]["amount"], topped["topUp"]["status"]) == ("10.00", "PAID")
    assert topped["wallet"]["balance"] == "10.00"
