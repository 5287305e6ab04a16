"""outbox wake-up: on PostgreSQL the database itself announces queued rows with NOTIFY

Every transaction that queues outbox rows then wakes the delivery processes when it commits (NOTIFY is
delivered at commit, once per transaction), whichever process or command queued them, and the process
that queued them needs no connection of its own to say so. SQLite has no NOTIFY; there the service
wakes the other processes itself (bot/wake.py).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 19:00:00
"""

from __future__ import annotations

from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

CHANNEL = "pdubot_outbox"  # bot/service.py listens on this channel


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"""
        CREATE FUNCTION pdubot_outbox_queued() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', '');
            RETURN NULL;
        END
        $$
    """)
    op.execute("CREATE TRIGGER outbox_queued AFTER INSERT ON outbox "
               "FOR EACH STATEMENT EXECUTE FUNCTION pdubot_outbox_queued()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS outbox_queued ON outbox")
    op.execute("DROP FUNCTION IF EXISTS pdubot_outbox_queued()")
