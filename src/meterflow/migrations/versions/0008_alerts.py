"""Alert rules, alert events (once per rule, customer and period), deliveries.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = """
CREATE TABLE alert_rules (
	account_id UUID NOT NULL,
	id UUID NOT NULL,
	name VARCHAR(200) NOT NULL,
	subject VARCHAR(20) NOT NULL,
	meter_id UUID,
	condition VARCHAR(20) NOT NULL,
	threshold NUMERIC NOT NULL,
	range VARCHAR(10) NOT NULL,
	customer_id VARCHAR(200),
	channels JSONB NOT NULL,
	enabled BOOLEAN NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
	PRIMARY KEY (account_id, id),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE alert_events (
	account_id UUID NOT NULL,
	id UUID NOT NULL,
	rule_id UUID NOT NULL,
	customer_id VARCHAR(200) NOT NULL,
	period_start TIMESTAMP WITH TIME ZONE NOT NULL,
	value NUMERIC NOT NULL,
	message TEXT NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
	PRIMARY KEY (account_id, id),
	CONSTRAINT uq_alert_events_once_per_period UNIQUE (account_id, rule_id, customer_id, period_start),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE alert_deliveries (
	account_id UUID NOT NULL,
	id UUID NOT NULL,
	event_id UUID NOT NULL,
	channel VARCHAR(10) NOT NULL,
	target VARCHAR(2000) NOT NULL,
	status VARCHAR(10) NOT NULL,
	attempts INTEGER NOT NULL,
	last_status_code INTEGER,
	last_error TEXT,
	delivered_at TIMESTAMP WITH TIME ZONE,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
	PRIMARY KEY (account_id, id),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);
"""


def upgrade() -> None:
    for statement in TABLES.split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for table in ("alert_deliveries", "alert_events", "alert_rules"):
        op.drop_table(table)
