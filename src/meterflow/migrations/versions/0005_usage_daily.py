"""Daily per-customer usage (dimensions collapsed), backfilled from the hourly rollups.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_daily",
        sa.Column(
            "account_id",
            sa.Uuid(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        ),
        sa.Column("meter_id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("day", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("sum", sa.Numeric(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("max", sa.Numeric(), nullable=False),
        sa.Column("latest_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latest_seq", sa.BigInteger(), nullable=False),
        sa.Column("latest_value", sa.Numeric(), nullable=False),
    )
    op.create_index("ix_usage_daily_meter_day", "usage_daily", ["account_id", "meter_id", "day"])
    op.execute(
        "INSERT INTO usage_daily SELECT account_id, meter_id, customer_id, "
        "date_trunc('day', hour, 'UTC') AS d, sum(sum), sum(count), max(max), "
        "(array_agg(latest_time ORDER BY latest_time DESC, latest_seq DESC))[1], "
        "(array_agg(latest_seq ORDER BY latest_time DESC, latest_seq DESC))[1], "
        "(array_agg(latest_value ORDER BY latest_time DESC, latest_seq DESC))[1] "
        "FROM usage_rollups GROUP BY account_id, meter_id, customer_id, d"
    )


def downgrade() -> None:
    op.drop_table("usage_daily")
