"""Account webhook endpoints, their events and deliveries; wallet low-balance states.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _account() -> sa.Column:
    return sa.Column(
        "account_id",
        sa.Uuid(),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        nullable=False,
    )


def _now(name: str) -> sa.Column:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.clock_timestamp()
    )


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        _account(),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", JSONB(), nullable=False),
        sa.Column("description", sa.String(500), nullable=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("previous_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("balance_low_threshold", sa.Numeric(), nullable=True),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        _now("created_at"),
        _now("updated_at"),
    )
    op.create_table(
        "webhook_events",
        _account(),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("type", sa.String(60), nullable=False),
        sa.Column("subject", sa.String(300), nullable=True),
        sa.Column("data", JSONB(), nullable=False),
        _now("created_at"),
    )
    op.create_index(
        "ix_webhook_events_subject",
        "webhook_events",
        ["account_id", "type", "subject", "created_at"],
    )
    op.create_table(
        "webhook_deliveries",
        _account(),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("attempts", JSONB(), nullable=False),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.String(100), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        _now("created_at"),
        _now("updated_at"),
    )
    op.create_index(
        "ix_webhook_deliveries_endpoint",
        "webhook_deliveries",
        ["account_id", "endpoint_id", "created_at"],
    )
    op.create_table(
        "wallet_low_states",
        _account(),
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("currency", sa.String(20), primary_key=True),
        sa.Column("threshold", sa.Numeric(), primary_key=True),
        sa.Column("below", sa.Boolean(), nullable=False),
        _now("updated_at"),
    )


def downgrade() -> None:
    for table in ("wallet_low_states", "webhook_deliveries", "webhook_events", "webhook_endpoints"):
        op.drop_table(table)
