"""Collecting money: connect Stripe, automatic and one-off top-ups."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from meterflow import models
from meterflow.pubsub import customer_channels
from meterflow.resolvers.base import Info, mutate, require_admin, require_reader, secret_box
from meterflow.resolvers.billing import wallet_currency
from meterflow.schema.payments import (
    AutoTopUp,
    ConnectStripeInput,
    ConnectStripeResult,
    CreateTopUpResult,
    SetAutoTopUpInput,
    SetAutoTopUpResult,
    StripeConnection,
    TopUp,
)
from meterflow.services import outbox, stripe_connections, top_ups
from meterflow.services.pagination import page_size


@strawberry.type
class PaymentQueries:
    @strawberry.field(description="A customer's top-ups, newest first.")
    async def top_ups(self, info: Info, customer_id: str, first: int | None = None) -> list[TopUp]:
        account_id = require_reader(info, customer_id)
        limit = page_size(first, maximum=info.context.max_page_size)
        async with info.context.session_factory() as session:
            rows = await top_ups.list_for(
                session, account_id=account_id, customer_id=customer_id, limit=limit
            )
        return [TopUp.from_model(row) for row in rows]


@strawberry.type
class PaymentMutations:
    @strawberry.mutation(
        description="Collect finalized invoices and sell prepaid credits through this account's "
        "own Stripe account. Connecting again replaces the keys and terms."
    )
    async def connect_stripe(self, info: Info, input: ConnectStripeInput) -> ConnectStripeResult:
        box = secret_box(info)
        return await mutate(
            info,
            lambda session, principal: stripe_connections.connect(
                session,
                account_id=principal.account_id,
                secret_key=input.secret_key,
                webhook_secret=input.webhook_secret,
                collection_method=input.collection_method,
                days_until_due=input.days_until_due,
                box=box,
                now=datetime.now(UTC),
            ),
            lambda row: StripeConnection.of(row.account_id, row),
        )

    @strawberry.mutation(
        description="Forget the Stripe keys: invoices finalized from now on are not sent."
    )
    async def disconnect_stripe(self, info: Info) -> StripeConnection:
        principal = require_admin(info)
        async with info.context.unit_of_work() as session:
            await stripe_connections.disconnect(session, account_id=principal.account_id)
        return StripeConnection.of(principal.account_id, None)

    @strawberry.mutation(
        description="Buy credits automatically when the wallet's balance falls below a "
        "threshold (charged to the customer's card on file through Stripe)."
    )
    async def set_auto_top_up(self, info: Info, input: SetAutoTopUpInput) -> SetAutoTopUpResult:
        started: list[models.TopUp] = []

        async def set_rule(session: AsyncSession, principal: Any) -> models.AutoTopUp:
            now = datetime.now(UTC)
            currency = await wallet_currency(
                session, principal.account_id, input.customer_id, input.currency, now
            )
            rule = await top_ups.set_auto(
                session,
                account_id=principal.account_id,
                customer_id=input.customer_id,
                currency=currency,
                threshold=input.threshold,
                amount=input.amount,
                enabled=input.enabled,
                now=now,
            )
            # A balance already under the new threshold tops up now, not at the next usage.
            started.extend(
                await top_ups.start_due(
                    session,
                    account_id=principal.account_id,
                    customer_ids=[input.customer_id],
                    now=now,
                )
            )
            return rule

        result = await mutate(info, set_rule, AutoTopUp.from_model)
        if started:
            await _run_top_ups(info)
        return result

    @strawberry.mutation(
        description="Buy prepaid credits once: a Stripe invoice, charged to the card on file or "
        "paid on its hosted page; the credits are granted when Stripe reports it paid."
    )
    async def create_top_up(
        self, info: Info, customer_id: str, amount: Decimal, currency: str | None = None
    ) -> CreateTopUpResult:
        async def create(session: AsyncSession, principal: Any) -> models.TopUp:
            now = datetime.now(UTC)
            chosen = await wallet_currency(
                session, principal.account_id, customer_id, currency, now
            )
            return await top_ups.create(
                session,
                account_id=principal.account_id,
                customer_id=customer_id,
                amount=amount,
                currency=chosen,
                now=now,
            )

        result = await mutate(info, create, TopUp.from_model)
        if isinstance(result, TopUp):
            await _run_top_ups(info)
            await info.context.publish(
                *customer_channels(require_admin(info).account_id, customer_id)
            )
        return result


async def _run_top_ups(info: Info) -> None:
    """Start the committed top-ups' sync now (the sweep would, within seconds)."""
    jobs = info.context.jobs
    if jobs is not None:
        await jobs.run_outbox(require_admin(info).account_id, outbox.SYNC_TOP_UP)
