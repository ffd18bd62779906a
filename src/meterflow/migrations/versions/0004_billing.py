"""Pricing plans, assignments, invoices, prepaid credits.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ENUMS = """
CREATE TYPE period_interval AS ENUM ('DAY', 'WEEK', 'MONTH', 'YEAR');
CREATE TYPE plan_status AS ENUM ('DRAFT', 'ACTIVE', 'DEPRECATED');
CREATE TYPE invoice_status AS ENUM ('OPEN', 'GRACE', 'FINALIZED', 'PAID', 'VOID', 'UNCOLLECTIBLE');
CREATE TYPE ledger_kind AS ENUM ('GRANT', 'CONSUMPTION', 'EXPIRY');
"""

TABLES = """
CREATE TABLE pricing_plans (
	account_id UUID NOT NULL,
	id UUID NOT NULL,
	name VARCHAR(200) NOT NULL,
	currency VARCHAR(3) NOT NULL,
	period_interval period_interval NOT NULL,
	period_count INTEGER NOT NULL,
	status plan_status NOT NULL,
	fees JSONB NOT NULL,
	discounts JSONB NOT NULL,
	minimum_spend NUMERIC,
	free_tier_amount NUMERIC,
	grace_period_hours INTEGER DEFAULT 0 NOT NULL,
	is_default BOOLEAN DEFAULT false NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
	activated_at TIMESTAMP WITH TIME ZONE,
	deprecated_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (account_id, id),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE plan_items (
	account_id UUID NOT NULL,
	id UUID NOT NULL,
	plan_id UUID NOT NULL,
	meter_id UUID NOT NULL,
	position INTEGER NOT NULL,
	price_model JSONB NOT NULL,
	included_units NUMERIC NOT NULL,
	PRIMARY KEY (account_id, id),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE plan_assignments (
	account_id UUID NOT NULL,
	id UUID NOT NULL,
	customer_id VARCHAR(200) NOT NULL,
	plan_id UUID NOT NULL,
	start_time TIMESTAMP WITH TIME ZONE NOT NULL,
	end_time TIMESTAMP WITH TIME ZONE,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
	PRIMARY KEY (account_id, id),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_plan_assignments_customer ON plan_assignments (account_id, customer_id, start_time);

CREATE TABLE invoices (
	account_id UUID NOT NULL,
	id UUID NOT NULL,
	customer_id VARCHAR(200) NOT NULL,
	plan_id UUID NOT NULL,
	assignment_id UUID NOT NULL,
	period_start TIMESTAMP WITH TIME ZONE NOT NULL,
	period_end TIMESTAMP WITH TIME ZONE NOT NULL,
	status invoice_status NOT NULL,
	currency VARCHAR(3) NOT NULL,
	lines JSONB NOT NULL,
	discounts JSONB NOT NULL,
	subtotal NUMERIC NOT NULL,
	discount NUMERIC NOT NULL,
	credits_applied NUMERIC NOT NULL,
	total NUMERIC NOT NULL,
	version BIGINT DEFAULT 0 NOT NULL,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
	updated_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
	finalized_at TIMESTAMP WITH TIME ZONE,
	PRIMARY KEY (account_id, id),
	CONSTRAINT uq_invoices_customer_period UNIQUE (account_id, customer_id, period_start),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_invoices_status_end ON invoices (status, period_end);

CREATE TABLE credit_grants (
	account_id UUID NOT NULL,
	id UUID NOT NULL,
	customer_id VARCHAR(200) NOT NULL,
	currency VARCHAR(20) NOT NULL,
	amount NUMERIC NOT NULL,
	remaining NUMERIC NOT NULL,
	priority INTEGER NOT NULL,
	purchased BOOLEAN NOT NULL,
	reason VARCHAR(500),
	expires_at TIMESTAMP WITH TIME ZONE,
	expired_at TIMESTAMP WITH TIME ZONE,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
	PRIMARY KEY (account_id, id),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_credit_grants_wallet ON credit_grants (account_id, customer_id, currency);

CREATE TABLE credit_allocations (
	account_id UUID NOT NULL,
	invoice_id UUID NOT NULL,
	grant_id UUID NOT NULL,
	amount NUMERIC NOT NULL,
	PRIMARY KEY (account_id, invoice_id, grant_id),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE TABLE wallet_ledger (
	account_id UUID NOT NULL,
	seq BIGSERIAL NOT NULL,
	customer_id VARCHAR(200) NOT NULL,
	currency VARCHAR(20) NOT NULL,
	kind ledger_kind NOT NULL,
	amount NUMERIC NOT NULL,
	balance_after NUMERIC NOT NULL,
	grant_id UUID,
	invoice_id UUID,
	created_at TIMESTAMP WITH TIME ZONE DEFAULT clock_timestamp() NOT NULL,
	PRIMARY KEY (seq, account_id),
	FOREIGN KEY(account_id) REFERENCES accounts (id) ON DELETE CASCADE
);

CREATE INDEX ix_wallet_ledger_wallet ON wallet_ledger (account_id, customer_id, currency, seq);
"""


def upgrade() -> None:
    # asyncpg prepares each statement: one command per execute.
    for statement in (ENUMS + TABLES).split(";"):
        if statement.strip():
            op.execute(statement)


def downgrade() -> None:
    for table in (
        "wallet_ledger",
        "credit_allocations",
        "credit_grants",
        "invoices",
        "plan_assignments",
        "plan_items",
        "pricing_plans",
    ):
        op.drop_table(table)
    for enum in ("ledger_kind", "invoice_status", "plan_status", "period_interval"):
        op.execute(f"DROP TYPE {enum}")
