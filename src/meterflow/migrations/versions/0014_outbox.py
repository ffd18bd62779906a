"""The transactional outbox: work that must happen (a re-rate, an alert evaluation, a delivery;
later Stripe and webhook calls), written in the transaction of the change that causes it.

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column(
            "account_id",
            sa.Uuid(),
            sa.ForeignKey("accounts.id", ondelete="CASCADE"),
            primary_key=True,
            nullable=False,
        ),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("payload", JSONB(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column(
            "available_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.clock_timestamp(),
        ),
        sa.Column("claimed_by", sa.String(200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.clock_timestamp(),
        ),
        sa.UniqueConstraint("account_id", "kind", "key", name="uq_outbox_key"),
    )
    op.create_index("ix_outbox_available_at", "outbox", ["available_at"])
    op.create_index(
        "ix_outbox_claimed_by",
        "outbox",
        ["claimed_by"],
        postgresql_where=sa.text("claimed_by IS NOT NULL"),
    )
    # Deliveries still pending were queued in Redis as jobs this version no longer runs: they
    # become outbox work.
    op.execute(
        "INSERT INTO outbox (account_id, id, kind, key, payload, version, attempts) "
        "SELECT account_id, gen_random_uuid(), 'alert.deliver', id::text, '{}'::jsonb, 1, 0 "
        "FROM alert_deliveries WHERE status = 'PENDING'"
    )


def downgrade() -> None:
    op.drop_table("outbox")
