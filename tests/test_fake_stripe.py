"""The fake Stripe API (tests/fake_stripe.py) driven by the real `stripe` SDK over HTTP."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import stripe
from stripe.params import CustomerCreateParams, InvoiceCreateParams

from tests.fake_stripe import FakeStripe, parse_form, sign

KEY = "sk_test_fake_123"
# HTTPXClient hands httpx the encoded form body as `data=<str>`, which httpx deprecates.


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as server:
        yield server


async def _client(fake: FakeStripe, key: str = KEY) -> AsyncIterator[stripe.StripeClient]:
    http_client = stripe.HTTPXClient()
    try:
        yield stripe.StripeClient(
            key, base_addresses={"api": fake.url}, max_network_retries=0, http_client=http_client
        )
    finally:
        await http_client.close_async()


@pytest.fixture
async def client(fake: FakeStripe) -> AsyncIterator[stripe.StripeClient]:
    async for c in _client(fake):
        yield c


async def _customer(
    client: stripe.StripeClient, metadata: dict[str, str] | None = None
) -> stripe.Customer:
    params: CustomerCreateParams = {"name": "Acme", "email": "billing@acme.test"}
    if metadata:
        params["metadata"] = metadata
    return await client.v1.customers.create_async(params=params)


async def _draft(
    client: stripe.StripeClient, customer_id: str, method: str | None = None
) -> stripe.Invoice:
    params: InvoiceCreateParams = {
        "customer": customer_id,
        "currency": "usd",
        "auto_advance": False,
    }
    if method == "send_invoice":
        params["collection_method"] = "send_invoice"
    return await client.v1.invoices.create_async(params=params)


async def _item(client: stripe.StripeClient, cus: str, inv: str, amount: int) -> None:
    await client.v1.invoice_items.create_async(
        params={"customer": cus, "invoice": inv, "amount": amount, "currency": "usd"}
    )


async def test_invoice_flow(fake: FakeStripe, client: stripe.StripeClient) -> None:
    cus = await _customer(client, metadata={"meterflow_customer_id": "c-1"})
    assert cus.id == "cus_1" and cus.object == "customer" and cus.livemode is False
    assert cus["metadata"]["meterflow_customer_id"] == "c-1"
    assert cus["invoice_settings"]["default_payment_method"] is None

    inv = await client.v1.invoices.create_async(
        params={
            "customer": cus.id,
            "currency": "usd",
            "collection_method": "send_invoice",
            "days_until_due": 30,
            "auto_advance": False,
            "description": "March usage",
            "metadata": {"meterflow_invoice_id": "inv-42"},
            "pending_invoice_items_behavior": "exclude",
        },
        options={"idempotency_key": "invoice-inv-42"},
    )
    assert (inv.status, inv.collection_method) == ("draft", "send_invoice")
    assert inv["days_until_due"] == 30  # not in the SDK's types for its (newer) API version
    assert inv.auto_advance is False and inv.total == 0 and inv.hosted_invoice_url is None
    sent = fake.posts("/v1/invoices")[0]
    assert sent.idempotency_key == "invoice-inv-42" and sent.api_key == KEY
    assert sent.params["metadata"] == {"meterflow_invoice_id": "inv-42"}
    assert sent.params["days_until_due"] == "30" and sent.params["auto_advance"] == "false"

    for amount, text in ((1500, "API calls"), (-200, "Credit")):
        item = await client.v1.invoice_items.create_async(
            params={
                "customer": cus.id,
                "invoice": inv.id,
                "amount": amount,
                "currency": "usd",
                "description": text,
                "metadata": {"line": text},
            }
        )
        assert item.object == "invoiceitem" and item.amount == amount and item.invoice == inv.id
    draft = fake.invoice(inv.id)
    assert (draft["total"], draft["amount_due"], draft["amount_remaining"]) == (1300, 1300, 1300)
    assert [line["amount"] for line in draft["lines"]["data"]] == [1500, -200]
    assert [i["id"] for i in fake.items(inv.id)] == ["ii_1", "ii_2"]
    assert fake.posts("/v1/invoiceitems")[1].params["amount"] == "-200"

    final = await client.v1.invoices.finalize_invoice_async(inv.id)
    assert final.status == "open" and final.total == 1300 and final.amount_due == 1300
    assert final.number == "FAKE-0001" and final.hosted_invoice_url == f"{fake.url}/hosted/{inv.id}"
    assert final.due_date is not None
    async with httpx.AsyncClient() as http:
        page = await http.get(final.hosted_invoice_url)
    assert page.status_code == 200 and "FAKE-0001" in page.text

    got = await client.v1.invoices.retrieve_async(inv.id, params={"expand": ["customer"]})
    assert got.total == 1300 and len(got.lines.data) == 2
    assert fake.requests[-1].params == {"expand": ["customer"]}
    again = await client.v1.customers.update_async(
        cus.id, params={"name": "Acme Inc", "metadata": {"meterflow_customer_id": "", "x": "1"}}
    )
    assert again.name == "Acme Inc" and again["metadata"].to_dict() == {"x": "1"}
    assert (await client.v1.customers.retrieve_async(cus.id)).name == "Acme Inc"


async def test_validation_errors(fake: FakeStripe, client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        await _draft(client, "cus_404")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    assert missing.value.param == "customer"

    cus = await _customer(client)
    with pytest.raises(stripe.InvalidRequestError) as no_days:
        await _draft(client, cus.id, "send_invoice")
    assert no_days.value.http_status == 400 and no_days.value.param == "days_until_due"

    inv = await _draft(client, cus.id)
    assert inv.collection_method == "charge_automatically"
    with pytest.raises(stripe.InvalidRequestError) as currency:
        await client.v1.invoice_items.create_async(
            params={"customer": cus.id, "invoice": inv.id, "amount": 5, "currency": "eur"}
        )
    assert currency.value.param == "currency"
    await _item(client, cus.id, inv.id, 700)
    await client.v1.invoices.finalize_invoice_async(inv.id)
    with pytest.raises(stripe.InvalidRequestError) as closed:
        await _item(client, cus.id, inv.id, 100)
    assert closed.value.http_status == 400 and closed.value.code == "invoice_not_editable"
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.finalize_invoice_async(inv.id)
    with pytest.raises(stripe.InvalidRequestError) as gone:
        await client.v1.invoices.retrieve_async("in_999")
    assert gone.value.http_status == 404 and gone.value.code == "resource_missing"
    assert fake.invoice(inv.id)["total"] == 700 and len(fake.items(inv.id)) == 1


async def test_idempotent_retry_creates_nothing(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    first = await _customer(client, metadata={"k": "v"})
    body: CustomerCreateParams = {"name": "Acme", "email": "billing@acme.test"}
    a = await client.v1.customers.create_async(params=body, options={"idempotency_key": "k1"})
    b = await client.v1.customers.create_async(params=body, options={"idempotency_key": "k1"})
    assert a.id == b.id != first.id
    assert len(fake.customers()) == 2 and len(fake.posts("/v1/customers")) == 2
    assert [r.replayed for r in fake.requests] == [False, False, True]
    assert b.last_response is not None
    assert b.last_response.headers["Idempotent-Replayed"] == "true"
    # Every SDK POST carries an Idempotency-Key: it makes up a UUID when none is given.
    assert fake.requests[0].idempotency_key

    with pytest.raises(stripe.IdempotencyError):
        await client.v1.customers.create_async(
            params={"name": "Other"}, options={"idempotency_key": "k1"}
        )
    # Another API key has its own keys.
    async for other in _client(fake, "sk_test_other"):
        c = await other.v1.customers.create_async(params=body, options={"idempotency_key": "k1"})
        assert c.id != a.id
    assert len(fake.customers()) == 3


async def test_server_error_then_retry(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.fail_next()
    with pytest.raises(stripe.APIError) as err:
        await client.v1.customers.create_async(
            params={"name": "A"}, options={"idempotency_key": "x"}
        )
    assert err.value.http_status == 500 and fake.customers() == []
    assert fake.requests[-1].status == 500
    cus = await client.v1.customers.create_async(
        params={"name": "A"}, options={"idempotency_key": "x"}
    )
    assert cus.id == "cus_1" and fake.requests[-1].replayed is False
    assert len(fake.customers()) == 1

    fake.fail_next(2, status=503, path_prefix="/v1/invoices")
    await _customer(client)  # another prefix: unaffected
    for _ in range(2):
        with pytest.raises(stripe.APIError):
            await _draft(client, cus.id)
    assert (await _draft(client, cus.id)).id == "in_1"


async def test_dropped_connection(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.drop_connection_next()
    with pytest.raises(stripe.APIConnectionError):
        await _customer(client)
    assert fake.customers() == [] and fake.requests[-1].status == 0
    assert (await _customer(client)).id == "cus_1"


async def test_pay(fake: FakeStripe, client: stripe.StripeClient) -> None:
    cus = await _customer(client)
    inv = await _draft(client, cus.id)
    await _item(client, cus.id, inv.id, 2500)
    await client.v1.invoices.finalize_invoice_async(inv.id)

    with pytest.raises(stripe.CardError) as declined:
        await client.v1.invoices.pay_async(inv.id)
    assert declined.value.http_status == 402 and declined.value.code == "card_declined"
    assert declined.value.user_message == "Your card was declined."
    assert fake.invoice(inv.id)["status"] == "open"

    fake.set_payment_method(cus.id, "pm_card_chargeDeclined")
    with pytest.raises(stripe.CardError):
        await client.v1.invoices.pay_async(inv.id)

    fake.set_payment_method(cus.id)
    assert fake.customer(cus.id)["invoice_settings"]["default_payment_method"] == "pm_card_visa"
    paid = await client.v1.invoices.pay_async(inv.id)
    assert paid.status == "paid" and paid.amount_paid == 2500 and paid.amount_remaining == 0
    assert paid.attempt_count == 3
    with pytest.raises(stripe.InvalidRequestError):
        await client.v1.invoices.pay_async(inv.id)

    # A zero total is paid on finalization.
    empty = await _draft(client, cus.id)
    assert (await client.v1.invoices.finalize_invoice_async(empty.id)).status == "paid"


async def test_bad_api_key(fake: FakeStripe) -> None:
    async for bad in _client(fake, "rk_live_nope"):
        with pytest.raises(stripe.AuthenticationError) as err:
            await bad.v1.customers.create_async(params={"name": "A"})
        assert err.value.http_status == 401
        assert "Invalid API Key provided" in str(err.value.user_message)
    assert fake.customers() == [] and fake.requests[-1].status == 401


async def test_webhook_events(fake: FakeStripe, client: stripe.StripeClient) -> None:
    cus = await _customer(client)
    inv = await _draft(client, cus.id)
    await _item(client, cus.id, inv.id, 900)
    await client.v1.invoices.finalize_invoice_async(inv.id)

    event = fake.mark_paid(inv.id)
    assert event["type"] == "invoice.paid" and event["id"] == "evt_1"
    assert event["data"]["object"]["status"] == "paid"
    assert event["data"]["object"]["amount_paid"] == 900
    body = json.dumps(event).encode()
    parsed = stripe.Webhook.construct_event(body, sign(body, "whsec_x"), "whsec_x")
    assert parsed.type == "invoice.paid" and parsed.data.object["id"] == inv.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, sign(body, "whsec_x"), "whsec_wrong")
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, sign(body, "whsec_x", 1_000_000_000), "whsec_x")

    other = await _draft(client, cus.id)
    await _item(client, cus.id, other.id, 100)
    await client.v1.invoices.finalize_invoice_async(other.id)
    failed = fake.mark_payment_failed(other.id, "Insufficient funds.")
    assert failed["type"] == "invoice.payment_failed"
    obj = failed["data"]["object"]
    assert obj["status"] == "open" and obj["attempt_count"] == 1
    assert obj["last_payment_error"] == {"message": "Insufficient funds.", "code": "card_declined"}
    assert obj["last_finalization_error"] is None
    assert fake.mark_uncollectible(other.id)["type"] == "invoice.marked_uncollectible"
    voided = fake.void(other.id)
    assert voided["type"] == "invoice.voided" and voided["data"]["object"]["status"] == "void"
    assert fake.invoice(other.id)["status"] == "void"
    with pytest.raises(ValueError):
        fake.mark_paid(other.id)
    custom = fake.event("customer.updated", fake.customer(cus.id))
    assert custom["api_version"] == "2024-06-20" and custom["livemode"] is False
    assert [e["type"] for e in fake.events][-1] == "customer.updated"


def test_sign_and_parse_form() -> None:
    mac = hmac.new(b"whsec_s", b"123.{}", hashlib.sha256).hexdigest()
    assert sign(b"{}", "whsec_s", 123) == f"t=123,v1={mac}"
    assert parse_form("a=1&metadata[0]=z&expand[0]=x&expand[1]=y&l[0][n]=5&e[]=p&e[]=q") == {
        "a": "1",
        "metadata": {"0": "z"},
        "expand": ["x", "y"],
        "l": [{"n": "5"}],
        "e": ["p", "q"],
    }


async def test_unknown_path(fake: FakeStripe) -> None:
    async with httpx.AsyncClient(base_url=fake.url) as http:
        resp = await http.get("/v1/nope", headers={"Authorization": f"Bearer {KEY}"})
        anon = await http.get("/v1/customers/cus_1")
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "invalid_request_error"
    assert anon.status_code == 401
