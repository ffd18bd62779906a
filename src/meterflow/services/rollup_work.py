"""One rollup step together with the work its new usage causes, in one transaction.

Every caller that moves a watermark (the rollup job, the period close's catch-up, finalizeInvoice)
goes through here, so no path can roll usage up without also recording, atomically, that the
touched customers' running invoices must be re-rated and their alert rules judged.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from meterflow.services import outbox, rollups

# What a step's new usage causes, in the order it should run: COST rules read the invoice.
CAUSED_KINDS = (outbox.RERATE, outbox.EVALUATE_ALERTS)


async def rollup_step(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    max_events: int = rollups.DEFAULT_MAX_EVENTS,
    meter_id: uuid.UUID | None = None,
) -> rollups.RollupResult:
    """A bounded rollup step of the account's meters (or of one) plus its outbox work
    (coalesced with any still pending). The caller commits both at once."""
    step = await rollups.rollup_account(
        session, account_id=account_id, max_events=max_events, meter_id=meter_id
    )
    work: dict[str, dict[str, Any]] = {customer: {} for _, customer in step.touched}
    for kind in CAUSED_KINDS:
        await outbox.add(session, account_id=account_id, kind=kind, items=work)
    return step
