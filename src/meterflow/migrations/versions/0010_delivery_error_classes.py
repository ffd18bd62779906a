"""Delivery log: forget what targets answered, keep only an error class.

Before this revision a failed delivery stored the first 200 characters of the target's answer
(or the network error's text); the log now keeps a short class and the status code only, so the
stored answers go (they could carry what an SSRF target reflected back).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        UPDATE alert_deliveries SET last_error = CASE
            WHEN last_status_code BETWEEN 300 AND 399 THEN 'redirect'
            WHEN last_status_code IS NOT NULL THEN 'http_' || last_status_code
            WHEN last_error LIKE '%Timeout%' THEN 'timeout'
            WHEN last_error LIKE 'ConnectError%' THEN 'connect_error'
            ELSE 'error'
        END
        WHERE last_error IS NOT NULL
        """
    )


def downgrade() -> None:
    pass  # the answers are gone, and the classes read fine under the old code
