"""The transactional outbox: work that must happen, written in the transaction of the change
that causes it, so no Redis blip between commit and enqueue can lose it.

  add()       in the producer's transaction; the same (account, kind, key) coalesces into one
              pending row (its `version` goes up);
  claim()     a worker takes a batch (FOR UPDATE SKIP LOCKED), leasing it by moving
              `available_at` ahead, so no sweep hands it out twice;
  complete()  deletes the rows done, unless re-added meanwhile (version moved): those run again;
  retry()     puts a row back for later, after a failure.

Enqueueing a job for the work is only the fast path; the worker's sweep enqueues whatever is
still due. Times come from the database clock: workers' clocks may disagree, PostgreSQL's is one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# The kinds of work. A handler per kind lives with the worker (workers/outbox.py).
RERATE = "invoice.rerate"  # key: customer id
EVALUATE_ALERTS = "alerts.evaluate"  # key: customer id
DELIVER_ALERT = "alert.deliver"  # key: delivery id
SYNC_INVOICE = "payment.invoice"  # key: invoice id (a finalized invoice sent to Stripe)
SYNC_TOP_UP = "payment.top_up"  # key: top-up id (a purchase of credits through Stripe)
DELIVER_WEBHOOK = "webhook.deliver"  # key: webhook delivery id


@dataclass(frozen=True)
class Work:
    account_id: uuid.UUID
    id: uuid.UUID
    kind: str
    key: str
    payload: dict[str, Any]
    version: int
    attempts: int


async def add(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    kind: str,
    items: dict[str, dict[str, Any]],
    delay_seconds: float = 0.0,
) -> None:
    """Record work (key -> payload). Re-adding pending work makes it due now, unless a worker
    holds it: that worker sees the new version when it completes and leaves the row to run
    again, so work added during a run is never swallowed by it."""
    if not items:
        return
    keys = sorted(items)  # one lock order for concurrent adds
    await session.execute(
        text(ADD),
        {
            "account": account_id,
            "kind": kind,
            "keys": keys,
            "payloads": [orjson.dumps(items[key]).decode() for key in keys],
            "delay": float(delay_seconds),
        },
    )


# One statement whatever the number of items (a rollup step adds one per customer it touched:
# built as a multi-row VALUES with an expression a row, SQLAlchemy's compile of 1,000 rows cost
# more than the step's SQL).
ADD = """
INSERT INTO outbox (account_id, id, kind, key, payload, version, attempts, available_at)
SELECT :account, gen_random_uuid(), :kind, item.key, item.payload, 1, 0,
       clock_timestamp() + make_interval(secs => :delay)
FROM unnest(CAST(:keys AS text[]), CAST(:payloads AS jsonb[])) WITH ORDINALITY
     AS item(key, payload, n)
ORDER BY item.n
ON CONFLICT ON CONSTRAINT uq_outbox_key DO UPDATE SET
    payload = excluded.payload,
    version = outbox.version + 1,
    available_at = CASE WHEN outbox.claimed_by IS NULL
                        THEN least(outbox.available_at, excluded.available_at)
                        ELSE outbox.available_at END
"""


CLAIM = """
UPDATE outbox o
SET available_at = clock_timestamp() + make_interval(secs => :lease),
    claimed_by = :worker, attempts = o.attempts + 1
FROM (
    SELECT account_id, id FROM outbox
    WHERE account_id = :account AND kind = :kind AND available_at <= clock_timestamp()
    ORDER BY available_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
) due
WHERE o.account_id = due.account_id AND o.id = due.id
RETURNING o.account_id, o.id, o.kind, o.key, o.payload, o.version, o.attempts
"""


async def claim(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    kind: str,
    worker: str,
    limit: int,
    lease_seconds: float,
) -> list[Work]:
    """Take up to `limit` due rows of one account and kind. Rows another worker is claiming
    right now are skipped, not waited for. The caller commits at once (the lease is the
    claim; no lock is held while the work runs)."""
    rows = await session.execute(
        text(CLAIM),
        {
            "account": account_id,
            "kind": kind,
            "worker": worker,
            "limit": limit,
            "lease": float(lease_seconds),
        },
    )
    return [Work(*row) for row in rows]


async def complete(session: AsyncSession, works: list[Work]) -> None:
    """The work is done: delete it, unless it was added again meanwhile (then it is due now)."""
    if not works:
        return
    params = {
        "account": works[0].account_id,
        "ids": [w.id for w in works],
        "versions": [w.version for w in works],
    }
    # Lock the rows first, in the order add() takes them (kind, then key): a rollup step adding
    # the same customers' work in another worker then waits for this, or this for it, but
    # never each for the other (deleting in the table's order deadlocked, two workers rolling
    # up one account's meters side by side).
    await session.execute(
        text(
            "SELECT 1 FROM outbox WHERE account_id = :account AND id = ANY(:ids) "
            "ORDER BY kind, key FOR UPDATE"
        ),
        {"account": params["account"], "ids": params["ids"]},
    )
    await session.execute(
        text(
            "DELETE FROM outbox WHERE account_id = :account AND (id, version) IN "
            "(SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:versions AS int[])))"
        ),
        params,
    )
    await session.execute(
        text(
            "UPDATE outbox SET claimed_by = NULL, attempts = 0, last_error = NULL, "
            "available_at = clock_timestamp() WHERE account_id = :account AND id = ANY(:ids)"
        ),
        {"account": params["account"], "ids": params["ids"]},
    )


async def retry(session: AsyncSession, work: Work, *, delay_seconds: float, error: str) -> None:
    """Not done: due again after `delay_seconds` (at once if it was added again meanwhile)."""
    await session.execute(
        text(
            "UPDATE outbox SET claimed_by = NULL, last_error = :error, available_at = "
            "CASE WHEN version = :version "
            "THEN clock_timestamp() + make_interval(secs => :delay) "
            "ELSE clock_timestamp() END "
            "WHERE account_id = :account AND id = :id"
        ),
        {
            "account": work.account_id,
            "id": work.id,
            "version": work.version,
            "delay": float(delay_seconds),
            "error": error[:500],
        },
    )


async def due(session: AsyncSession, *, limit: int = 1000) -> list[tuple[uuid.UUID, str]]:
    """(account, kind) pairs with work due now, oldest first: what the sweep enqueues."""
    rows = await session.execute(
        text(
            "SELECT account_id, kind FROM (SELECT account_id, kind, available_at FROM outbox "
            "WHERE available_at <= clock_timestamp() ORDER BY available_at LIMIT :limit) d "
            "GROUP BY account_id, kind ORDER BY min(available_at)"
        ),
        {"limit": limit},
    )
    return [(row[0], row[1]) for row in rows]


async def release_dead_claims(session: AsyncSession, *, live_workers: set[str]) -> int:
    """Work leased by workers that are gone is due again now, not when the lease runs out."""
    result = await session.execute(
        text(
            "UPDATE outbox SET claimed_by = NULL, available_at = clock_timestamp() "
            "WHERE claimed_by IS NOT NULL AND NOT (claimed_by = ANY(:live))"
        ),
        {"live": sorted(live_workers)},
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def pending(
    session: AsyncSession, *, account_id: uuid.UUID, kind: str | None = None
) -> list[Work]:
    """Everything pending for an account (for operators and tests)."""
    query = (
        "SELECT account_id, id, kind, key, payload, version, attempts FROM outbox "
        "WHERE account_id = :account"
    )
    params: dict[str, Any] = {"account": account_id}
    if kind is not None:
        query += " AND kind = :kind"
        params["kind"] = kind
    rows = await session.execute(text(query + " ORDER BY created_at, key"), params)
    return [Work(*row) for row in rows]
