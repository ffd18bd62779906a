"""Payments through Stripe: account connections, invoice payments, top-ups and their automatic
rule, handled Stripe events, and the customer's Stripe id.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLLECTION = postgresql.ENUM(
    "CHARGE_AUTOMATICALLY", "SEND_INVOICE", name="collection_method", create_type=False
)
PAYMENT = postgresql.ENUM(
    "PENDING", "PAID", "FAILED", "UNCOLLECTIBLE", "VOID", name="payment_status", create_type=False
)
TOP_UP = postgresql.ENUM(
    "PENDING", "PAID", "FAILED", "VOID", name="top_up_status", create_type=False
)


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
    bind = op.get_bind()
    for kind in (COLLECTION, PAYMENT, TOP_UP):
        kind.create(bind, checkfirst=True)
    op.add_column("customers", sa.Column("stripe_customer_id", sa.String(255), nullable=True))
    op.create_table(
        "stripe_connections",
        _account(),
        sa.Column("secret_key", sa.Text(), nullable=False),
        sa.Column("webhook_secret", sa.Text(), nullable=False),
        sa.Column("key_last4", sa.String(4), nullable=False),
        sa.Column("collection_method", COLLECTION, nullable=False),
        sa.Column("days_until_due", sa.Integer(), nullable=False),
        _now("connected_at"),
        _now("updated_at"),
    )
    op.create_table(
        "invoice_payments",
        _account(),
        sa.Column("invoice_id", sa.Uuid(), primary_key=True),
        sa.Column("provider", sa.String(20), nullable=False),
        sa.Column("status", PAYMENT, nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("external_customer_id", sa.String(255), nullable=True),
        sa.Column("collection_method", COLLECTION, nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hosted_invoice_url", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
    )
    op.create_table(
        "top_ups",
        _account(),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("automatic", sa.Boolean(), nullable=False),
        sa.Column("status", TOP_UP, nullable=False),
        sa.Column("external_id", sa.String(255), nullable=True),
        sa.Column("external_customer_id", sa.String(255), nullable=True),
        sa.Column("collection_method", COLLECTION, nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hosted_invoice_url", sa.Text(), nullable=True),
        sa.Column("grant_id", sa.Uuid(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _now("created_at"),
        _now("updated_at"),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "uq_top_ups_pending",
        "top_ups",
        ["account_id", "customer_id", "currency"],
        unique=True,
        postgresql_where=sa.text("status = 'PENDING'"),
    )
    op.create_index("ix_top_ups_customer", "top_ups", ["account_id", "customer_id", "created_at"])
    op.create_table(
        "auto_top_ups",
        _account(),
        sa.Column("customer_id", sa.String(200), primary_key=True),
        sa.Column("currency", sa.String(3), primary_key=True),
        sa.Column("threshold", sa.Numeric(), nullable=False),
        sa.Column("amount", sa.Numeric(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _now("updated_at"),
    )
    op.create_table(
        "stripe_events",
        _account(),
        sa.Column("event_id", sa.String(255), primary_key=True),
        sa.Column("type", sa.String(100), nullable=False),
        _now("received_at"),
    )


def downgrade() -> None:
    for table in ("stripe_events", "auto_top_ups", "top_ups", "invoice_payments"):
        op.drop_table(table)
    op.drop_table("stripe_connections")
    op.drop_column("customers", "stripe_customer_id")
    bind = op.get_bind()
    for kind in (TOP_UP, PAYMENT, COLLECTION):
        kind.drop(bind, checkfirst=True)
