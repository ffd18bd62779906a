"""wallet_ledger's primary key leads with account_id, as every other table's does: the
schema stays ready to be distributed by account (docs/scaling.md), and a wallet's lines sit
together in the index. It was (seq, account_id) since 0004.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        "ALTER TABLE wallet_ledger DROP CONSTRAINT wallet_ledger_pkey, "
        "ADD CONSTRAINT wallet_ledger_pkey PRIMARY KEY (account_id, seq)"
    )


def downgrade() -> None:
    op.execute(
        "ALTER TABLE wallet_ledger DROP CONSTRAINT wallet_ledger_pkey, "
        "ADD CONSTRAINT wallet_ledger_pkey PRIMARY KEY (seq, account_id)"
    )
