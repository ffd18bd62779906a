"""Subscriptions: each yields the current state first, then every change, coalesced to a few
messages a second and always ending on the latest state (see pubsub.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import TypeVar

import strawberry
from graphql import GraphQLError

from meterflow.pubsub import channel
from meterflow.resolvers.base import Info, require_admin, require_reader
from meterflow.schema.billing import Invoice, Wallet
from meterflow.schema.events import MeterEvent
from meterflow.services import customer_views, events, invoice_queries, wallets

# At most this many messages a second per subscription: a burst of changes becomes one.
COALESCE_SECONDS = 0.2
READY_TIMEOUT_SECONDS = 5.0
S = TypeVar("S")


@strawberry.type
class UsageSnapshot:
    customer_id: str
    meter_api_name: str
    value: Decimal
    period_start: datetime
    period_end: datetime
    at: datetime


@strawberry.type
class MeterEventBatch:
    meter_api_name: str | None
    events: list[MeterEvent] = strawberry.field(
        description="Newest events since the last message (at most 100), in ingestion order."
    )


async def follow(
    info: Info,
    channels: list[str],
    read: Callable[[], Awaitable[S | None]],
    same: Callable[[S, S], bool],
) -> AsyncGenerator[S, None]:
    broker = info.context.broker
    if broker is None:
        raise GraphQLError("subscriptions are not available", extensions={"code": "UNAVAILABLE"})
    async with broker.subscribe(*channels) as subscriber:
        # Redis slow or away: still send the current state; updates follow once it is back.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(subscriber.ready.wait(), READY_TIMEOUT_SECONDS)
        last: S | None = None
        sent_at = 0.0
        changes = subscriber.changes()
        loop = asyncio.get_running_loop()
        while True:
            state = await read()
            if state is not None and (last is None or not same(last, state)):
                last = state
                sent_at = loop.time()
                yield state
            await anext(changes)
            # A rate limit, not a delay: a lone change goes out at once; within a burst, changes
            # arriving during the wait are folded into the one read that follows it.
            await asyncio.sleep(max(0.0, sent_at + COALESCE_SECONDS - loop.time()))


@strawberry.type
class RealtimeSubscriptions:
    @strawberry.subscription(description="The running invoice, now and on every change.")
    async def invoice_updated(self, info: Info, customer_id: str) -> AsyncGenerator[Invoice, None]:
        account_id = require_reader(info, customer_id)

        async def read() -> Invoice | None:
            async with info.context.unit_of_work() as session:
                row = await invoice_queries.current_invoice(
                    session, account_id=account_id, customer_id=customer_id, now=datetime.now(UTC)
                )
            return Invoice.from_model(row) if row else None

        async for invoice in follow(
            info, [channel(account_id, "invoice", customer_id)], read, lambda a, b: a == b
        ):
            yield invoice

    @strawberry.subscription(description="A meter's usage so far this month, live.")
    async def usage_updated(
        self, info: Info, customer_id: str, meter_api_name: str
    ) -> AsyncGenerator[UsageSnapshot, None]:
        account_id = require_reader(info, customer_id)

        async def read() -> UsageSnapshot | None:
            async with info.context.session_factory() as session:
                found = await customer_views.current_usage(
                    session,
                    account_id=account_id,
                    customer_ids=[customer_id],
                    now=datetime.now(UTC),
                    meter_api_name=meter_api_name,
                )
            totals = found[customer_id]
            if not totals:
                raise GraphQLError(f"no meter {meter_api_name!r}", extensions={"code": "NOT_FOUND"})
            total = totals[0]
            return UsageSnapshot(
                customer_id=customer_id,
                meter_api_name=meter_api_name,
                value=total.value,
                period_start=total.period_start,
                period_end=total.period_end,
                at=datetime.now(UTC),
            )

        async for snapshot in follow(
            info, [channel(account_id, "usage", customer_id)], read, lambda a, b: a.value == b.value
        ):
            yield snapshot

    @strawberry.subscription(description="Prepaid balance, live.")
    async def wallet_updated(
        self, info: Info, customer_id: str, currency: str = "USD"
    ) -> AsyncGenerator[Wallet, None]:
        account_id = require_reader(info, customer_id)

        async def read() -> Wallet:
            async with info.context.session_factory() as session:
                left = await wallets.balance(
                    session,
                    account_id=account_id,
                    customer_id=customer_id,
                    currency=currency.upper(),
                    now=datetime.now(UTC),
                )
            return Wallet(
                customer_id=customer_id,
                currency=currency.upper(),
                balance=left,
                account_id=account_id,
            )

        async for wallet in follow(
            info,
            [channel(account_id, "wallet", customer_id)],
            read,
            lambda a, b: a.balance == b.balance,
        ):
            yield wallet

    @strawberry.subscription(description="Newly ingested events, for a live By Event view.")
    async def meter_events_ingested(
        self, info: Info, meter_api_name: str | None = None
    ) -> AsyncGenerator[MeterEventBatch, None]:
        account_id = require_admin(info).account_id
        cursor: str | None = None
        first = True

        async def read() -> MeterEventBatch | None:
            nonlocal cursor, first
            async with info.context.session_factory() as session:
                if first:  # the current state: the latest few events
                    items = await events.latest_events(
                        session, account_id=account_id, meter_api_name=meter_api_name, limit=10
                    )
                    first = False
                else:
                    page = await events.list_events(
                        session,
                        account_id=account_id,
                        filter=events.EventFilter(meter_api_name=meter_api_name),
                        limit=100,
                        after=cursor,
                    )
                    items = page.items
            if items:
                cursor = events.encode_seq_cursor(items[-1].seq)
            return MeterEventBatch(
                meter_api_name=meter_api_name, events=[MeterEvent.from_stored(e) for e in items]
            )

        topic = channel(account_id, "events", meter_api_name or "*")
        async for batch in follow(info, [topic], read, lambda a, b: False):
            if batch.events:
                yield batch
