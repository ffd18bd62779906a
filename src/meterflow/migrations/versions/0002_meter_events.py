"""Meter events: monthly-partitioned append-only table, dedup identities, partition helper.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql
from sqlalchemy.types import UserDefinedType


class XID8(UserDefinedType[int]):
    """A frozen copy of the type (migrations must not change when app code does)."""

    cache_ok = True

    def get_col_spec(self, **kw: object) -> str:
        return "XID8"


revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Creates the partition holding `ts` if it is missing. Safe to call concurrently: two sessions
# racing to create the same partition both return normally.
ENSURE_PARTITION = """
CREATE OR REPLACE FUNCTION meterflow_ensure_event_partition(ts timestamptz) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  month_start timestamp := date_trunc('month', ts AT TIME ZONE 'UTC');
  month_end   timestamp := month_start + interval '1 month';
  part text := 'meter_events_' || to_char(month_start, 'YYYY_MM');
BEGIN
  IF to_regclass(part) IS NOT NULL THEN
    RETURN;
  END IF;
  EXECUTE format(
    'CREATE TABLE IF NOT EXISTS %I PARTITION OF meter_events FOR VALUES FROM (%L) TO (%L)',
    part, month_start::text || '+00', month_end::text || '+00');
EXCEPTION WHEN duplicate_table OR unique_violation OR duplicate_object THEN
  NULL;
END $$;
"""


def upgrade() -> None:
    op.execute("CREATE SEQUENCE meter_event_seq")
    op.create_table(
        "meter_events",
        sa.Column(
            "account_id",
            sa.Uuid(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "seq",
            sa.BigInteger(),
            nullable=False,
            server_default=sa.text("nextval('meter_event_seq')"),
        ),
        sa.Column("meter_id", sa.Uuid(), nullable=False),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("value", sa.Numeric(), nullable=False),
        sa.Column("unique_id", sa.String(200), nullable=True),
        sa.Column("identity", sa.String(220), nullable=False),
        sa.Column(
            "dimensions", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("raw", sa.JSON(), nullable=False),
        sa.Column(
            "ingested_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column(
            "ingest_xid", XID8(), nullable=False, server_default=sa.text("pg_current_xact_id()")
        ),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancel_xid", XID8(), nullable=True),
        sa.PrimaryKeyConstraint("account_id", "event_time", "seq", name="pk_meter_events"),
        postgresql_partition_by="RANGE (event_time)",
    )
    op.create_index("ix_meter_events_account_seq", "meter_events", ["account_id", "seq"])
    op.create_index("ix_meter_events_account_xid", "meter_events", ["account_id", "ingest_xid"])

    op.create_table(
        "meter_event_identities",
        sa.Column(
            "account_id",
            sa.Uuid(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        ),
        sa.Column("meter_id", sa.Uuid(), primary_key=True),
        sa.Column("identity", sa.String(220), primary_key=True),
        sa.Column("event_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
    )
    op.execute(ENSURE_PARTITION)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS meterflow_ensure_event_partition(timestamptz)")
    op.drop_table("meter_event_identities")
    op.drop_table("meter_events")
    op.execute("DROP SEQUENCE IF EXISTS meter_event_seq")
