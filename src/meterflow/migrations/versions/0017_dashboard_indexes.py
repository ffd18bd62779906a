"""Indexes for the dashboards' lists (the filters and orders of `customers` and `invoices`):
customers by creation and by lower(name); invoices by period, by total, and by total within a
status. Each ends with the row id, the keyset cursors' tie-breaker.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_customers_created", "customers", ["account_id", "created_at", "id"])
    op.create_index("ix_customers_name", "customers", ["account_id", sa.text("lower(name)"), "id"])
    op.create_index("ix_invoices_period", "invoices", ["account_id", "period_start", "id"])
    op.create_index("ix_invoices_total", "invoices", ["account_id", "total", "id"])
    op.create_index("ix_invoices_status_total", "invoices", ["account_id", "status", "total", "id"])


def downgrade() -> None:
    op.drop_index("ix_invoices_status_total", table_name="invoices")
    op.drop_index("ix_invoices_total", table_name="invoices")
    op.drop_index("ix_invoices_period", table_name="invoices")
    op.drop_index("ix_customers_name", table_name="customers")
    op.drop_index("ix_customers_created", table_name="customers")
