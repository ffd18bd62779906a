"""Secrets at rest: customer session tokens stored as hashes (a SHA-256 of the token id
replaces the id); delivery targets widened to text, since sealed (encrypted) webhook and Slack
URLs are about 1.4 times longer than the URL.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customer_sessions", sa.Column("token_hash", sa.String(64), nullable=True))
    # Outstanding tokens keep working: the hash is of the id they carry (sha256() is PG 11+).
    op.execute(
        "UPDATE customer_sessions "
        "SET token_hash = encode(sha256(convert_to(token_id, 'UTF8')), 'hex')"
    )
    op.alter_column("customer_sessions", "token_hash", nullable=False)
    op.create_unique_constraint(
        "customer_sessions_token_hash_key", "customer_sessions", ["token_hash"]
    )
    op.drop_column("customer_sessions", "token_id")  # its unique constraint goes with it
    op.alter_column(
        "alert_deliveries",
        "target",
        type_=sa.Text(),
        existing_type=sa.String(2000),
        existing_nullable=False,
    )


def downgrade() -> None:
    # Sealed targets mean nothing to the code before this revision; cut to fit, not kept.
    op.alter_column(
        "alert_deliveries",
        "target",
        type_=sa.String(2000),
        existing_type=sa.Text(),
        existing_nullable=False,
        postgresql_using="left(target, 2000)",
    )
    # A hash does not give the id back, so outstanding tokens end here (they live 24 h by
    # default); their owners mint new ones.
    op.execute("DELETE FROM customer_sessions")
    op.add_column("customer_sessions", sa.Column("token_id", sa.String(64), nullable=False))
    op.create_unique_constraint("customer_sessions_token_id_key", "customer_sessions", ["token_id"])
    op.drop_column("customer_sessions", "token_hash")
