"""meter_events and meter_event_identities lose their foreign key to accounts.

A foreign key is checked by a trigger per inserted row: on the ingest path that was two
`SELECT … FOR KEY SHARE` on the same accounts row for every event, 5.3 ms of a 17 ms
1,000-event batch (EXPLAIN ANALYZE, bench/write_paths.py). Nothing needs it: events are only
written for an account whose API key was verified in the same request, accounts are never
deleted by the application, and an account removed by hand takes its events with it through
`meterflow_delete_account_events` (below), which is what ON DELETE CASCADE did.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# ON DELETE CASCADE without a per-row check on insert: one statement trigger on accounts.
CASCADE_FUNCTION = """
CREATE OR REPLACE FUNCTION meterflow_delete_account_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM meter_event_identities i USING deleted_accounts d WHERE i.account_id = d.id;
  DELETE FROM meter_events e USING deleted_accounts d WHERE e.account_id = d.id;
  RETURN NULL;
END $$
"""
CASCADE_TRIGGER = """
CREATE TRIGGER accounts_delete_events AFTER DELETE ON accounts
REFERENCING OLD TABLE AS deleted_accounts
FOR EACH STATEMENT EXECUTE FUNCTION meterflow_delete_account_events();
"""


def upgrade() -> None:
    op.execute("ALTER TABLE meter_events DROP CONSTRAINT meter_events_account_id_fkey")
    op.execute(
        "ALTER TABLE meter_event_identities DROP CONSTRAINT meter_event_identities_account_id_fkey"
    )
    op.execute(CASCADE_FUNCTION)
    op.execute(CASCADE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS accounts_delete_events ON accounts")
    op.execute("DROP FUNCTION IF EXISTS meterflow_delete_account_events()")
    op.execute(
        "ALTER TABLE meter_events ADD CONSTRAINT meter_events_account_id_fkey "
        "FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE"
    )
    op.execute(
        "ALTER TABLE meter_event_identities ADD CONSTRAINT meter_event_identities_account_id_fkey "
        "FOREIGN KEY (account_id) REFERENCES accounts (id) ON DELETE CASCADE"
    )
