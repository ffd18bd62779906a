"""Custom-currency credits: a grant's unit may be worth `ratio` of a money currency.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "credit_grants",
        sa.Column("ratio", sa.Numeric(), nullable=False, server_default=sa.text("1")),
    )
    op.add_column("credit_grants", sa.Column("money_currency", sa.String(3), nullable=True))
    op.execute("UPDATE credit_grants SET money_currency = left(currency, 3)")
    op.alter_column("credit_grants", "money_currency", nullable=False)


def downgrade() -> None:
    op.drop_column("credit_grants", "money_currency")
    op.drop_column("credit_grants", "ratio")
