"""The money path into Stripe, service by service against the real database and the real
`stripe` SDK talking to a local fake Stripe: which collection method an invoice gets, a crash
between any two steps, Stripe's retry advice, zero-amount invoices, voids that give credits
back, failed payments, and top-ups (one at a time under concurrent re-rates; back-off after a
failure). Figures are by hand: one meter `calls` at 0.50 a call."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import text

from meterflow.db import SessionFactory, unit_of_work
from meterflow.models import CollectionMethod
from meterflow.secretbox import SecretBox
from meterflow.services import (
    customers,
    ingestion,
    invoice_lifecycle,
    invoice_payments,
    invoice_queries,
    invoice_rating,
    outbox,
    payment_sync,
    rollups,
    stripe_connections,
    stripe_events,
    top_ups,
    wallets,
)
from meterflow.services.payment_sync import StripeSync
from meterflow.workers.payments import sync_invoice_work
from tests.billing_setup import per_unit_account, put_on_plan
from tests.conftest import TEST_SECRET_KEY
from tests.fake_stripe import FakeStripe

BOX = SecretBox(TEST_SECRET_KEY)
SECRET_KEY = "sk_test_paymentsync_0000"
D = Decimal


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as stripe:
        yield stripe


@pytest.fixture(autouse=True)
async def _no_stripe_left_behind(session_factory: SessionFactory) -> AsyncIterator[None]:
    """Later modules run workers with no fake Stripe: nothing connected or pending may reach
    them (they would call the real Stripe)."""
    yield
    async with unit_of_work(session_factory) as session:
        await session.execute(text("DELETE FROM outbox WHERE kind LIKE 'payment.%'"))
        await session.execute(text("DELETE FROM stripe_connections"))


def sync(fake: FakeStripe, crash_at: str | None = None) -> StripeSync:
    async def after_step(step: str) -> None:
        if step == crash_at:
            raise RuntimeError(f"crash after {step}")

    return StripeSync(
        box=BOX, clock=lambda: datetime.now(UTC), api_base=fake.url, after_step=after_step
    )


async def connected(factory: SessionFactory, *, credits: str | None) -> uuid.UUID:
    """A new account connected to (fake) Stripe, charging automatically, with one customer
    "cust" (named "Cust Co") on a per-unit plan at 0.50 a call, and `credits` USD granted."""
    now = datetime.now(UTC)
    async with unit_of_work(factory) as session:
        account_id, plan_id = await per_unit_account(session, name="pay", unit_price="0.5", now=now)
        await put_on_plan(
            session,
            account_id=account_id,
            plan_id=plan_id,
            customer_ids=["cust"],
            start=None,
            now=now,
        )
        await customers.update_customer(
            session, account_id=account_id, customer_id="cust", name="Cust Co", now=now
        )
        await stripe_connections.connect(
            session,
            account_id=account_id,
            secret_key=SECRET_KEY,
            webhook_secret="whsec_paymentsync0000",
            collection_method=CollectionMethod.CHARGE_AUTOMATICALLY,
            days_until_due=30,
            box=BOX,
            now=now,
        )
        if credits:
            await wallets.grant(
                session,
                account_id=account_id,
                customer_id="cust",
                amount=D(credits),
                currency="USD",
                priority=1,
                expires_at=None,
                reason=None,
                purchased=True,
                now=now,
            )
    return account_id


async def billed(
    factory: SessionFactory, *, calls: int, credits: str | None = None
) -> tuple[uuid.UUID, uuid.UUID]:
    """A connected account whose customer made `calls` calls this period, its invoice
    finalized: (account, invoice)."""
    account_id = await connected(factory, credits=credits)
    await use(factory, account_id, calls)
    async with unit_of_work(factory) as session:
        current = await invoice_queries.current_invoice(
            session, account_id=account_id, customer_id="cust", now=datetime.now(UTC)
        )
        assert current is not None
        await invoice_lifecycle.finalize_invoice(
            session, account_id=account_id, invoice_id=current.id, now=datetime.now(UTC)
        )
    return account_id, current.id


async def use(factory: SessionFactory, account_id: uuid.UUID, calls: int) -> None:
    if not calls:
        return
    now = datetime.now(UTC)
    record = {
        "meterApiName": "calls",
        "customerId": "cust",
        "meterValue": calls,
        "uniqueId": str(uuid.uuid4()),
        "meterTimeInMillis": int((now - timedelta(seconds=5)).timestamp() * 1000),
    }
    async with unit_of_work(factory) as session:
        await ingestion.ingest(
            session,
            account_id=account_id,
            records=[ingestion.RawRecord(record, json.dumps(record))],
            now=now,
        )
    async with unit_of_work(factory) as session:
        await rollups.rollup_account(session, account_id=account_id)
        await invoice_rating.rerate_customers(
            session, account_id=account_id, customer_ids=["cust"], now=datetime.now(UTC)
        )


async def payment_of(factory: SessionFactory, account_id: uuid.UUID, invoice_id: uuid.UUID) -> Any:
    async with factory() as session:
        found = await invoice_payments.payments_of(
            session, account_id=account_id, invoice_ids=[invoice_id]
        )
    return found[invoice_id]


async def invoice_row(factory: SessionFactory, account_id: uuid.UUID, invoice_id: uuid.UUID) -> Any:
    async with factory() as session:
        return (
            await session.scalar(
                text("SELECT status, credits_applied, total FROM invoices WHERE id = :i"),
                {"i": invoice_id},
            )
            and (
                await session.execute(
                    text("SELECT status, credits_applied, total FROM invoices WHERE id = :i"),
                    {"i": invoice_id},
                )
            ).one()
        )


async def webhook(factory: SessionFactory, account_id: uuid.UUID, event: dict[str, Any]) -> Any:
    async with unit_of_work(factory) as session:
        return await stripe_events.handle(
            session, account_id=account_id, event=event, now=datetime.now(UTC)
        )


def stripe_invoices_of(fake: FakeStripe, invoice_id: uuid.UUID) -> list[dict[str, Any]]:
    return [
        i for i in fake.invoices() if i["metadata"].get("meterflow_invoice_id") == str(invoice_id)
    ]


async def test_no_card_on_file_sends_the_invoice_to_pay_on_its_hosted_page(
    session_factory: SessionFactory, fake: FakeStripe
) -> None:
    account_id, invoice_id = await billed(session_factory, calls=7)
    async with session_factory() as session:
        pending = await outbox.pending(session, account_id=account_id, kind=outbox.SYNC_INVOICE)
    assert [w.key for w in pending] == [str(invoice_id)]  # written with the finalization
    assert (
        await payment_sync.sync_invoice(
            session_factory, sync(fake), account_id=account_id, invoice_id=invoice_id
        )
        == "cust"
    )
    [sent] = stripe_invoices_of(fake, invoice_id)
    assert (sent["collection_method"], sent["days_until_due"]) == ("send_invoice", 30)
    assert sent["status"] == "open" and sent["total"] == 350  # 7 x 0.50 = 3.50
    customer = fake.customer(sent["customer"])
    assert customer["name"] == "Cust Co"
    assert customer["metadata"] == {
        "meterflow_customer_id": "cust",
        "meterflow_account_id": str(account_id),
    }
    payment = await payment_of(session_factory, account_id, invoice_id)
    assert payment.collection_method is CollectionMethod.SEND_INVOICE
    assert payment.hosted_invoice_url == f"{fake.url}/hosted/{sent['id']}"
    assert payment.external_customer_id == sent["customer"]
    async with session_factory() as session:
        stored = await customers.get_customer(session, account_id=account_id, customer_id="cust")
    assert stored is not None and stored.stripe_customer_id == sent["customer"]
    # Done is done: running it again sends nothing.
    before = len(fake.requests)
    assert (
        await payment_sync.sync_invoice(
            session_factory, sync(fake), account_id=account_id, invoice_id=invoice_id
        )
        is None
    )
    assert len(fake.requests) == before


@pytest.mark.parametrize("crash_at", ["customer", "invoice", "item:0", "finalize"])
async def test_a_crash_between_steps_then_the_retry_creates_nothing_twice(
    session_factory: SessionFactory, fake: FakeStripe, crash_at: str
) -> None:
    account_id, invoice_id = await billed(session_factory, calls=9)
    customers_before = len(fake.customers())
    with pytest.raises(RuntimeError, match=f"crash after {crash_at}"):
        await payment_sync.sync_invoice(
            session_factory, sync(fake, crash_at), account_id=account_id, invoice_id=invoice_id
        )
    await payment_sync.sync_invoice(
        session_factory, sync(fake), account_id=account_id, invoice_id=invoice_id
    )
    [sent] = stripe_invoices_of(fake, invoice_id)
    assert len(fake.customers()) == customers_before + 1
    assert [item["amount"] for item in fake.items(sent["id"])] == [450]
    assert sent["status"] == "open" and sent["total"] == 450
    replayed = [
        r for r in fake.requests if r.replayed and str(invoice_id) in (r.idempotency_key or "")
    ]
    if crash_at != "customer":
        assert replayed, "the step that crashed was replayed by its idempotency key"
    assert (await payment_of(session_factory, account_id, invoice_id)).synced_at is not None


async def test_stripe_outages_are_retried_and_refusals_recorded(
    session_factory: SessionFactory, fake: FakeStripe, redis_url: str
) -> None:
    account_id, invoice_id = await billed(session_factory, calls=2)
    from redis.asyncio import Redis

    ctx = {
        "session_factory": session_factory,
        "secret_box": BOX,
        "stripe_api_base": fake.url,
        "redis": Redis.from_url(redis_url),
    }
    [work] = await _pending(session_factory, account_id)
    fake.fail_next(1, status=500)
    later = await sync_invoice_work(ctx, account_id, [work])
    assert list(later) == [work.id]  # a 5xx: tried again after a backoff
    fake.drop_connection_next(1)
    later = await sync_invoice_work(ctx, account_id, [work])
    assert list(later) == [work.id]  # no answer at all: the same
    payment = await payment_of(session_factory, account_id, invoice_id)
    assert (payment.status.value, payment.attempts) == ("PENDING", 2)
    assert payment.last_error.startswith("APIConnectionError")
    assert await sync_invoice_work(ctx, account_id, [work]) == {}
    payment = await payment_of(session_factory, account_id, invoice_id)
    assert (payment.status.value, payment.last_error) == ("PENDING", None)
    assert len(stripe_invoices_of(fake, invoice_id)) == 1

    # A request Stripe refuses is not retried: the payment is FAILED, the error kept.
    account_id, invoice_id = await billed(session_factory, calls=2)
    [work] = await _pending(session_factory, account_id)
    fake.fail_next(1, status=400)
    assert await sync_invoice_work(ctx, account_id, [work]) == {}
    payment = await payment_of(session_factory, account_id, invoice_id)
    assert (payment.status.value, payment.attempts) == ("FAILED", 1)
    assert payment.last_error.startswith("InvalidRequestError")
    await ctx["redis"].aclose()


async def _pending(factory: SessionFactory, account_id: uuid.UUID) -> list[Any]:
    async with factory() as session:
        return await outbox.pending(session, account_id=account_id, kind=outbox.SYNC_INVOICE)


def test_stripe_errors_follow_stripes_retry_advice() -> None:
    import stripe

    from meterflow.payments.gateway import _error

    assert _error(stripe.APIConnectionError("down")).retryable
    assert _error(stripe.APIError("oops", http_status=500)).retryable
    assert _error(stripe.RateLimitError("slow down", http_status=429)).retryable
    assert not _error(
        stripe.CardError("declined", "card", "card_declined", http_status=402)
    ).retryable
    assert not _error(stripe.InvalidRequestError("bad", "amount", http_status=400)).retryable
    assert not _error(stripe.AuthenticationError("bad key", http_status=401)).retryable
    overridden = stripe.APIError("oops", http_status=500, headers={"stripe-should-retry": "false"})
    assert not _error(overridden).retryable


async def test_an_invoice_covered_by_credits_is_paid_at_once_and_never_sent(
    session_factory: SessionFactory, fake: FakeStripe
) -> None:
    before = len(fake.requests)
    account_id, invoice_id = await billed(session_factory, calls=4, credits="10")
    status, credits, total = await invoice_row(session_factory, account_id, invoice_id)
    assert (status, credits, total) == ("PAID", D("2.00"), D("0.00"))
    payment = await payment_of(session_factory, account_id, invoice_id)
    assert payment.status.value == "PAID"
    assert await _pending(session_factory, account_id) == []
    assert len(fake.requests) == before


async def test_failed_then_paid_and_a_void_gives_credits_back(
    session_factory: SessionFactory, fake: FakeStripe
) -> None:
    # 10 calls = 5.00; 1.50 of credits drawn: 3.50 due, sent as 5.00 - 1.50.
    account_id, invoice_id = await billed(session_factory, calls=10, credits="1.50")
    await payment_sync.sync_invoice(
        session_factory, sync(fake), account_id=account_id, invoice_id=invoice_id
    )
    [sent] = stripe_invoices_of(fake, invoice_id)
    assert [i["amount"] for i in fake.items(sent["id"])] == [500, -150]
    failed = fake.mark_payment_failed(sent["id"], "Your card was declined.")
    assert (await webhook(session_factory, account_id, failed)).customers == {"cust"}
    payment = await payment_of(session_factory, account_id, invoice_id)
    assert (payment.status.value, payment.attempts) == ("FAILED", 1)
    assert "Your card was declined." in payment.last_error
    assert (await invoice_row(session_factory, account_id, invoice_id))[0] == "FINALIZED"
    voided = fake.void(sent["id"])
    await webhook(session_factory, account_id, voided)
    status, credits, _ = await invoice_row(session_factory, account_id, invoice_id)
    assert (status, credits) == ("VOID", D(0))
    assert (await payment_of(session_factory, account_id, invoice_id)).status.value == "VOID"
    async with session_factory() as session:
        balance = await wallets.balance(
            session,
            account_id=account_id,
            customer_id="cust",
            currency="USD",
            now=datetime.now(UTC),
        )
    assert balance == D("1.50")  # all the credits it drew are back
    # A paid event arriving after the void changes nothing (no reopening a closed invoice).
    late = fake.event("invoice.paid", {**voided["data"]["object"], "status": "paid"})
    assert (await webhook(session_factory, account_id, late)).customers == set()
    assert (await invoice_row(session_factory, account_id, invoice_id))[0] == "VOID"


async def test_uncollectible_and_another_accounts_event_is_ignored(
    session_factory: SessionFactory, fake: FakeStripe
) -> None:
    account_id, invoice_id = await billed(session_factory, calls=3)
    await payment_sync.sync_invoice(
        session_factory, sync(fake), account_id=account_id, invoice_id=invoice_id
    )
    [sent] = stripe_invoices_of(fake, invoice_id)
    event = fake.mark_uncollectible(sent["id"])
    other, _ = await billed(session_factory, calls=1)
    # The same Stripe object sent to another meterflow account's endpoint: not its invoice.
    assert (await webhook(session_factory, other, event)).customers == set()
    assert (await invoice_row(session_factory, account_id, invoice_id))[0] == "FINALIZED"
    await webhook(session_factory, account_id, event)
    assert (await invoice_row(session_factory, account_id, invoice_id))[0] == "UNCOLLECTIBLE"


async def _card_on_file(
    factory: SessionFactory, fake: FakeStripe, account_id: uuid.UUID, pm: str
) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=fake.url) as client:
        response = await client.post(
            "/v1/customers",
            data={"name": "cust"},
            headers={"Authorization": f"Bearer {SECRET_KEY}"},
        )
    stripe_id = response.json()["id"]
    fake.set_payment_method(stripe_id, pm)
    async with unit_of_work(factory) as session:
        await customers.update_customer(
            session,
            account_id=account_id,
            customer_id="cust",
            stripe_customer_id=stripe_id,
            now=datetime.now(UTC),
        )


async def _auto_account(factory: SessionFactory, fake: FakeStripe, pm: str) -> uuid.UUID:
    """A connected account whose customer has 3.00 of credits, a card, and the rule: below
    2.00, buy 20.00."""
    account_id = await connected(factory, credits="3")
    async with unit_of_work(factory) as session:
        await top_ups.set_auto(
            session,
            account_id=account_id,
            customer_id="cust",
            currency="USD",
            threshold=D(2),
            amount=D(20),
            enabled=True,
            now=datetime.now(UTC),
        )
    await _card_on_file(factory, fake, account_id, pm)
    return account_id


async def _start_concurrently(factory: SessionFactory, account_id: uuid.UUID, n: int) -> int:
    async def once() -> int:
        async with unit_of_work(factory) as session:
            started = await top_ups.start_due(
                session, account_id=account_id, customer_ids=["cust"], now=datetime.now(UTC)
            )
            await asyncio.sleep(0.05)  # hold the transaction open: they overlap
        return len(started)

    return sum(await asyncio.gather(*(once() for _ in range(n))))


async def test_auto_top_up_fires_once_under_concurrent_usage_and_grants_once(
    session_factory: SessionFactory, fake: FakeStripe
) -> None:
    account_id = await _auto_account(session_factory, fake, "pm_card_visa")
    assert await _start_concurrently(session_factory, account_id, 4) == 0  # 3.00 >= 2.00
    await use(session_factory, account_id, 3)  # 1.50 drawn: 1.50 left, under 2.00
    assert await _start_concurrently(session_factory, account_id, 8) == 1
    async with session_factory() as session:
        [row] = await top_ups.list_for(session, account_id=account_id, customer_id="cust", limit=10)
    assert (row.status.value, row.amount, row.automatic) == ("PENDING", D("20.00"), True)
    await payment_sync.sync_top_up(
        session_factory, sync(fake), account_id=account_id, top_up_id=row.id
    )
    async with session_factory() as session:
        row = await top_ups.get(session, account_id=account_id, top_up_id=row.id)
        assert row is not None
        balance = await wallets.balance(
            session,
            account_id=account_id,
            customer_id="cust",
            currency="USD",
            now=datetime.now(UTC),
        )
    sent = fake.invoice(row.external_id or "")
    assert (sent["collection_method"], sent["status"], sent["total"]) == (
        "charge_automatically",
        "paid",
        2000,
    )
    assert row.status.value == "PAID" and row.grant_id is not None
    assert balance == D("21.50")  # 1.50 left + 20.00 bought
    # Stripe's invoice.paid arrives afterwards (twice): no second grant.
    paid = fake.event("invoice.paid", sent)
    await webhook(session_factory, account_id, paid)
    await webhook(session_factory, account_id, {**paid, "id": "evt_other_delivery"})
    async with session_factory() as session:
        grants = await session.scalar(
            text("SELECT count(*) FROM credit_grants WHERE account_id = :a"), {"a": account_id}
        )
    assert grants == 2  # the first 3.00, and the top-up once
    assert await _start_concurrently(session_factory, account_id, 4) == 0  # 21.50 >= 2.00


async def test_a_failed_top_up_is_recorded_and_the_next_waits_for_the_back_off(
    session_factory: SessionFactory, fake: FakeStripe
) -> None:
    account_id = await _auto_account(session_factory, fake, "pm_card_chargeDeclined")
    await use(session_factory, account_id, 4)  # 2.00 drawn: 1.00 left
    assert await _start_concurrently(session_factory, account_id, 3) == 1
    async with session_factory() as session:
        [row] = await top_ups.list_for(session, account_id=account_id, customer_id="cust", limit=10)
    await payment_sync.sync_top_up(
        session_factory, sync(fake), account_id=account_id, top_up_id=row.id
    )
    async with session_factory() as session:
        row = await top_ups.get(session, account_id=account_id, top_up_id=row.id)
    assert row is not None and row.status.value == "FAILED"
    assert row.last_error is not None and "declined" in row.last_error
    assert row.grant_id is None
    # More usage, more re-rates: no new top-up within the hour, so never a loop of charges.
    await use(session_factory, account_id, 1)
    assert await _start_concurrently(session_factory, account_id, 3) == 0
    later = datetime.now(UTC) + timedelta(hours=1, minutes=1)
    async with unit_of_work(session_factory) as session:
        again = await top_ups.start_due(
            session, account_id=account_id, customer_ids=["cust"], now=later
        )
    assert len(again) == 1 and again[0].id != row.id


async def test_auto_top_up_amounts_fit_the_currency(session_factory: SessionFactory) -> None:
    from meterflow.errors import NotFoundError, ValidationError

    now = datetime.now(UTC)
    async with unit_of_work(session_factory) as session:
        account_id, plan_id = await per_unit_account(session, name="rule", unit_price="1", now=now)
        await put_on_plan(
            session, account_id=account_id, plan_id=plan_id, customer_ids=["c"], start=None, now=now
        )
    for threshold, amount, field in (
        ("1", "9.995", "amount"),
        ("0.001", "10", "threshold"),
        ("1", "0", "amount"),
        ("-1", "10", "threshold"),
        ("1", "1e400", "amount"),
        ("1", "NaN", "amount"),
    ):
        async with unit_of_work(session_factory) as session:
            with pytest.raises(ValidationError) as refused:
                await top_ups.set_auto(
                    session,
                    account_id=account_id,
                    customer_id="c",
                    currency="USD",
                    threshold=D(threshold),
                    amount=D(amount),
                    enabled=True,
                    now=now,
                )
        assert refused.value.field == field, (threshold, amount)
    async with unit_of_work(session_factory) as session:
        with pytest.raises(NotFoundError):
            await top_ups.set_auto(
                session,
                account_id=account_id,
                customer_id="nobody",
                currency="USD",
                threshold=D(1),
                amount=D(5),
                enabled=True,
                now=now,
            )
        rule = await top_ups.set_auto(
            session,
            account_id=account_id,
            customer_id="c",
            currency="jpy",
            threshold=D(100),
            amount=D(1000),
            enabled=True,
            now=now,
        )
    assert (rule.currency, rule.threshold, rule.amount) == ("JPY", D(100), D(1000))
