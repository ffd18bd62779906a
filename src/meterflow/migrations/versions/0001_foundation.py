"""Foundation: accounts, API keys, customers, meters.

Revision ID: 0001
Revises:
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

API_KEY_SCOPE = postgresql.ENUM("admin", "ingest", name="api_key_scope", create_type=False)
METER_TYPE = postgresql.ENUM(
    "SUM",
    "COUNT",
    "MAX",
    "LATEST",
    "RUNNING_TOTAL",
    "UNIQUE_COUNT",
    "DURATION",
    name="meter_type",
    create_type=False,
)
METER_STATUS = postgresql.ENUM(
    "DRAFT", "ACTIVE", "DEPRECATED", name="meter_status", create_type=False
)


def _ts(name: str, *, nullable: bool = False, default_now: bool = True) -> sa.Column:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.clock_timestamp() if default_now else None,
    )


def _account_fk() -> sa.Column:
    return sa.Column(
        "account_id",
        sa.Uuid(),
        sa.ForeignKey("accounts.id", ondelete="CASCADE"),
        primary_key=True,
        nullable=False,
    )


def upgrade() -> None:
    bind = op.get_bind()
    for enum in (API_KEY_SCOPE, METER_TYPE, METER_STATUS):
        enum.create(bind, checkfirst=True)

    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("auto_create_customers", sa.Boolean(), nullable=False),
        _ts("created_at"),
    )
    op.create_table(
        "api_keys",
        _account_fk(),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scope", API_KEY_SCOPE, nullable=False),
        _ts("created_at"),
        _ts("revoked_at", nullable=True, default_now=False),
    )
    op.create_index("uq_api_keys_key_hash", "api_keys", ["key_hash"], unique=True)
    op.create_table(
        "customers",
        _account_fk(),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("customer_id", sa.String(200), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(320), nullable=True),
        sa.Column(
            "traits", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.UniqueConstraint("account_id", "customer_id", name="uq_customers_account_customer_id"),
    )
    op.create_table(
        "meters",
        _account_fk(),
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("meter_api_name", sa.String(100), nullable=False),
        sa.Column("label", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("unit", sa.String(50), nullable=True),
        sa.Column("meter_type", METER_TYPE, nullable=False),
        sa.Column(
            "dimensions",
            postgresql.ARRAY(sa.String(100)),
            nullable=False,
            server_default=sa.text("'{}'::varchar[]"),
        ),
        sa.Column("aggregation_dimension", sa.String(100), nullable=True),
        sa.Column("use_in_billing", sa.Boolean(), nullable=False),
        sa.Column("status", METER_STATUS, nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        _ts("activated_at", nullable=True, default_now=False),
        _ts("deprecated_at", nullable=True, default_now=False),
        sa.UniqueConstraint("account_id", "meter_api_name", name="uq_meters_account_api_name"),
    )


def downgrade() -> None:
    op.drop_table("meters")
    op.drop_table("customers")
    op.drop_index("uq_api_keys_key_hash", table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("accounts")
    bind = op.get_bind()
    for enum in (METER_STATUS, METER_TYPE, API_KEY_SCOPE):
        enum.drop(bind, checkfirst=True)
