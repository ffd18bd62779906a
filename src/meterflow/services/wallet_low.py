"""wallet.balance_low: a wallet's balance crossed below a threshold — its auto top-up rule's,
or one an endpoint set (`balanceLowThreshold`). Fires once per crossing: a row per (wallet,
threshold) remembers being below, and clears when the balance is back at or above it.

Judged after re-rates (the worker's, in their transaction) for the customers they touched;
costs nothing unless an endpoint subscribes to the type.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from meterflow.models import AutoTopUp, CreditGrant, WalletLowState, WebhookEndpoint
from meterflow.services import wallets, webhook_events, webhook_payloads
from meterflow.services.sql import any_text

EVENT = "wallet.balance_low"


async def check(
    session: AsyncSession, *, account_id: uuid.UUID, customer_ids: Sequence[str], now: datetime
) -> int:
    """Emit wallet.balance_low for each wallet of these customers that fell below one of its
    thresholds since it was last judged. Returns how many fired."""
    if not customer_ids or not await webhook_events.wanted(
        session, account_id=account_id, event_type=EVENT
    ):
        return 0
    thresholds: dict[tuple[str, str], set[Decimal]] = {}
    for rule in await session.scalars(
        select(AutoTopUp).where(
            col(AutoTopUp.account_id) == account_id,
            col(AutoTopUp.customer_id) == any_text(list(customer_ids)),
            col(AutoTopUp.enabled).is_(True),
        )
    ):
        thresholds.setdefault((rule.customer_id, rule.currency), set()).add(rule.threshold)
    endpoint_levels = {
        Decimal(level)
        for level in await session.scalars(
            select(col(WebhookEndpoint.balance_low_threshold)).where(
                col(WebhookEndpoint.account_id) == account_id,
                col(WebhookEndpoint.enabled).is_(True),
                col(WebhookEndpoint.balance_low_threshold).is_not(None),
            )
        )
        if level is not None
    }
    if endpoint_levels:
        wallets_of = await session.execute(
            select(col(CreditGrant.customer_id), col(CreditGrant.currency))
            .where(
                col(CreditGrant.account_id) == account_id,
                col(CreditGrant.customer_id) == any_text(list(customer_ids)),
            )
            .distinct()
        )
        for customer_id, currency in wallets_of:
            thresholds.setdefault((customer_id, currency), set()).update(endpoint_levels)
    fired = 0
    for (customer_id, currency), levels in sorted(thresholds.items()):
        balance = await wallets.balance(
            session, account_id=account_id, customer_id=customer_id, currency=currency, now=now
        )
        for level in sorted(levels):
            if await _crossed(session, account_id, customer_id, currency, level, balance, now):
                data = webhook_payloads.wallet(customer_id, currency, balance)
                data["threshold"] = str(level)
                await webhook_events.emit(
                    session,
                    account_id=account_id,
                    events=[webhook_events.Event(EVENT, {"wallet": data}, customer_id)],
                    now=now,
                )
                fired += 1
    return fired


async def _crossed(
    session: AsyncSession,
    account_id: uuid.UUID,
    customer_id: str,
    currency: str,
    level: Decimal,
    balance: Decimal,
    now: datetime,
) -> bool:
    """Record whether the wallet is below `level`; True when it just went below. The row is
    made first (ON CONFLICT DO NOTHING) and then locked, so concurrent re-rates of one wallet
    judge the crossing one after the other and only one of them fires."""
    key = {
        "account_id": account_id,
        "customer_id": customer_id,
        "currency": currency,
        "threshold": level,
    }
    await session.execute(
        insert(WalletLowState)
        .values(**key, below=False, updated_at=now)
        .on_conflict_do_nothing(index_elements=list(key))
    )
    state = await session.scalar(
        select(WalletLowState)
        .where(*(getattr(WalletLowState, k) == v for k, v in key.items()))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert state is not None
    below = balance < level
    crossed = below and not state.below
    if state.below != below:
        state.below = below
        state.updated_at = now
        await session.flush()
    return crossed
