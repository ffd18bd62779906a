"""The rollup goes by meter: a watermark per (account, meter), and the events' transaction-id
index leads with the meter, so that each meter's new events are found without reading the
others'. A busy account's meters are then rolled up side by side, by several workers.

The account watermarks stay as they are: a meter with no watermark of its own starts from its
account's, which is exactly where the rollup of its events stood.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.types import UserDefinedType


class XID8(UserDefinedType[int]):
    """A frozen copy of the type (migrations must not change when app code does)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "XID8"


revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_meter_watermarks",
        sa.Column(
            "account_id",
            sa.Uuid(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        ),
        sa.Column("meter_id", sa.Uuid(), primary_key=True),
        sa.Column("xid", XID8(), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index(
        "ix_meter_events_account_meter_xid",
        "meter_events",
        ["account_id", "meter_id", "ingest_xid"],
    )
    op.drop_index("ix_meter_events_account_xid", table_name="meter_events")


def downgrade() -> None:
    op.create_index("ix_meter_events_account_xid", "meter_events", ["account_id", "ingest_xid"])
    op.drop_index("ix_meter_events_account_meter_xid", table_name="meter_events")
    op.drop_table("usage_meter_watermarks")
