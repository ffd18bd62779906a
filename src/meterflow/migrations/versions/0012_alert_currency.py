"""Alerts in the right currency: a BALANCE rule names the wallet it watches, and an alert
records the currency of its value.

Rules made before were judged on the USD wallet, so they keep USD. BALANCE rules with
PERCENT_CHANGE, and hourly COST rules with PERCENT_CHANGE, compared a figure with itself (there
is no previous figure for them); they are refused at creation now, and disabled here so they
stop firing on a change of 0%.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("alert_rules", sa.Column("currency", sa.String(20), nullable=True))
    op.add_column("alert_events", sa.Column("currency", sa.String(20), nullable=True))
    op.execute("UPDATE alert_rules SET currency = 'USD' WHERE subject = 'BALANCE'")
    op.execute(
        "UPDATE alert_rules SET enabled = false WHERE condition = 'PERCENT_CHANGE' "
        "AND (subject = 'BALANCE' OR (subject = 'COST' AND range = 'HOUR'))"
    )


def downgrade() -> None:
    op.drop_column("alert_events", "currency")
    op.drop_column("alert_rules", "currency")
