"""Usage rollups, distinct values, duration intervals, watermarks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import UserDefinedType

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


class XID8(UserDefinedType[int]):
    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "XID8"


def _account() -> sa.Column:
    return sa.Column(
        "account_id",
        sa.Uuid(),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        nullable=False,
    )


def upgrade() -> None:
    op.create_index(
        "ix_meter_events_account_cancel_xid",
        "meter_events",
        ["account_id", "cancel_xid"],
        postgresql_where=sa.text("cancel_xid IS NOT NULL"),
    )
    op.create_table(
        "usage_watermarks",
        _account(),
        sa.Column("xid", XID8(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_table(
        "usage_rollups",
        _account(),
        sa.Column("meter_id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("dimensions", postgresql.JSONB(), primary_key=True),
        sa.Column("sum", sa.Numeric(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("max", sa.Numeric(), nullable=False),
        sa.Column("latest_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("latest_seq", sa.BigInteger(), nullable=False),
        sa.Column("latest_value", sa.Numeric(), nullable=False),
    )
    op.create_table(
        "usage_distinct_values",
        _account(),
        sa.Column("meter_id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("dimensions", postgresql.JSONB(), primary_key=True),
        sa.Column("value", sa.String(200), nullable=False),
    )
    op.create_index(
        "ix_usage_rollups_meter_hour", "usage_rollups", ["account_id", "meter_id", "hour"]
    )
    op.create_index(
        "ix_usage_distinct_values_meter_hour",
        "usage_distinct_values",
        ["account_id", "meter_id", "hour"],
    )
    op.create_table(
        "usage_duration_intervals",
        _account(),
        sa.Column("meter_id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("dimensions", postgresql.JSONB(), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), primary_key=True),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("usage_duration_intervals")
    op.drop_table("usage_distinct_values")
    op.drop_table("usage_rollups")
    op.drop_table("usage_watermarks")
    op.drop_index("ix_meter_events_account_cancel_xid", table_name="meter_events")
