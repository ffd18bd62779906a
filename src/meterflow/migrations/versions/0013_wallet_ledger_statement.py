"""The wallet ledger reads like a statement: one CONSUMPTION line per (invoice, grant), moving in
place (`updated_at`), instead of one line per re-rate; the running balance is computed when read,
so `balance_after` goes.

Existing consumption lines (one per re-rate, per invoice and wallet currency, without a grant)
collapse into one line per (invoice, grant) holding the net amount. The grants come from the
invoice's credit allocations; a custom-currency split's rounding remainder goes to the grant
drawn last, so each wallet's lines still sum to exactly what they summed to before. Lines that
net to zero are dropped; a non-zero net with no allocation left (a rounding residue) stays as one
line without a grant.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23
"""

from collections import defaultdict
from collections.abc import Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNIT_PLACES = Decimal("1e-12")  # services/wallets.py: a custom-currency grant's unit precision

GROUPS = """
SELECT account_id, invoice_id, currency, customer_id, sum(amount) AS net,
       (array_agg(seq ORDER BY seq))[1:20] AS seqs, min(created_at) AS first, max(created_at) AS last
FROM wallet_ledger WHERE kind = 'CONSUMPTION'
GROUP BY account_id, invoice_id, currency, customer_id
"""

ALLOCATIONS = """
SELECT a.account_id, a.invoice_id, g.currency, g.id, a.amount, g.ratio
FROM credit_allocations a
JOIN credit_grants g ON g.account_id = a.account_id AND g.id = a.grant_id
WHERE a.amount > 0
ORDER BY g.priority, g.expires_at ASC NULLS LAST, g.created_at, g.id
"""


def _units(money: Decimal, ratio: Decimal) -> Decimal:
    return money if ratio == 1 else (money / ratio).quantize(UNIT_PLACES, ROUND_HALF_UP)


def _collapse(bind: sa.Connection) -> None:
    held: dict[tuple[Any, Any, str], list[tuple[Any, Decimal]]] = defaultdict(list)
    for account, invoice, currency, grant, money, ratio in bind.execute(sa.text(ALLOCATIONS)):
        held[(account, invoice, currency)].append((grant, _units(money, ratio)))
    updates: list[dict[str, Any]] = []
    inserts: list[dict[str, Any]] = []
    keep: list[int] = []
    for account, invoice, currency, customer, net, seqs, first, last in bind.execute(
        sa.text(GROUPS)
    ):
        lines = [(grant, -units) for grant, units in held.get((account, invoice, currency), [])]
        if lines:
            residue = net - sum(amount for _, amount in lines)
            lines[-1] = (lines[-1][0], lines[-1][1] + residue)
        elif net != 0:
            lines = [(None, net)]
        lines = [(grant, amount) for grant, amount in lines if amount != 0]
        for i, (grant, amount) in enumerate(lines):
            values = {"grant": grant, "amount": amount, "first": first, "last": last}
            if i < len(seqs):
                keep.append(seqs[i])
                updates.append({**values, "seq": seqs[i], "account": account})
            else:
                inserts.append(
                    {
                        **values,
                        "account": account,
                        "invoice": invoice,
                        "currency": currency,
                        "customer": customer,
                    }
                )
    if updates:
        bind.execute(
            sa.text(
                "UPDATE wallet_ledger SET grant_id = :grant, amount = :amount,"
                " created_at = :first, updated_at = :last"
                " WHERE account_id = :account AND seq = :seq"
            ),
            updates,
        )
    bind.execute(
        sa.text(
            "DELETE FROM wallet_ledger WHERE kind = 'CONSUMPTION' AND NOT (seq = ANY(:keep))"
        ).bindparams(sa.bindparam("keep", type_=sa.ARRAY(sa.BigInteger))),
        {"keep": keep},
    )
    if inserts:
        bind.execute(
            sa.text(
                "INSERT INTO wallet_ledger (account_id, customer_id, currency, kind, amount,"
                " grant_id, invoice_id, created_at, updated_at) VALUES (:account, :customer,"
                " :currency, 'CONSUMPTION', :amount, :grant, :invoice, :first, :last)"
            ),
            inserts,
        )


def upgrade() -> None:
    op.add_column(
        "wallet_ledger",
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.execute("UPDATE wallet_ledger SET updated_at = created_at")
    op.alter_column(
        "wallet_ledger",
        "updated_at",
        nullable=False,
        server_default=sa.text("clock_timestamp()"),
    )
    _collapse(op.get_bind())
    op.drop_column("wallet_ledger", "balance_after")
    op.create_unique_constraint(
        "uq_wallet_ledger_invoice_grant",
        "wallet_ledger",
        ["account_id", "invoice_id", "grant_id"],
    )


def downgrade() -> None:
    # The collapsed lines stay collapsed (a valid ledger before this revision too); the stored
    # balance is the running sum of each wallet, as the statement shows it.
    op.drop_constraint("uq_wallet_ledger_invoice_grant", "wallet_ledger", type_="unique")
    op.add_column("wallet_ledger", sa.Column("balance_after", sa.Numeric(), nullable=True))
    op.execute(
        "UPDATE wallet_ledger w SET balance_after = r.balance FROM (SELECT account_id, seq,"
        " sum(amount) OVER (PARTITION BY account_id, customer_id, currency ORDER BY seq)"
        " AS balance FROM wallet_ledger) r WHERE r.account_id = w.account_id AND r.seq = w.seq"
    )
    op.alter_column("wallet_ledger", "balance_after", nullable=False)
    op.drop_column("wallet_ledger", "updated_at")
