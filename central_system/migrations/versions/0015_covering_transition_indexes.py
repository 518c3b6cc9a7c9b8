"""desk connection history: covering indexes for the uptime reports (PostgreSQL)

Revision ID: 0015_covering_transition_indexes
Revises: 0014_uptime_online_at_end
Create Date: 2026-12-01 20:00:00

Replaces the two indexes of ``desk_connection_events`` instead of adding to them (the
liveness service inserts every transition; no more indexes to update than before):

- ``(faculty_id, at)`` becomes ``(faculty_id, at, id) INCLUDE (online)``: a report's probe
  for each desk's newest row before its start, ordered by ``at`` then ``id``, reads one
  index entry (no sort of the ties, no table row);
- ``(at)`` becomes ``(at) INCLUDE (faculty_id, id, online)``: a range's rows (a report's
  partial days, the rollup's day) are an index-only scan.

Index-only only where the table's pages are all-visible: after a VACUUM, which autovacuum
runs on an insert-only table every ~20 % of its size (docs/performance.md "Desk uptime").
SQLite has no INCLUDE and its indexes already hold ``id`` (the rowid): it gets the same keys,
which read as before (a covering composite measured no faster there). Building the indexes
blocks writes to the table for about a second per million rows for each (issue 12).
"""

from __future__ import annotations

from alembic import op

revision = "0015_covering_transition_indexes"
down_revision = "0014_uptime_online_at_end"
branch_labels = None
depends_on = None

TABLE = "desk_connection_events"


def upgrade() -> None:
    op.drop_index("ix_desk_connection_events_faculty_at", table_name=TABLE)
    op.create_index(
        "ix_desk_connection_events_faculty_at_id",
        TABLE,
        ["faculty_id", "at", "id"],
        unique=False,
        postgresql_include=["online"],
    )
    if op.get_bind().dialect.name == "postgresql":
        # On SQLite the index stays as it is: (at), with the rowid.
        op.drop_index("ix_desk_connection_events_at", table_name=TABLE)
        op.create_index(
            "ix_desk_connection_events_at",
            TABLE,
            ["at"],
            unique=False,
            postgresql_include=["faculty_id", "id", "online"],
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_desk_connection_events_at", table_name=TABLE)
        op.create_index("ix_desk_connection_events_at", TABLE, ["at"], unique=False)
    op.drop_index("ix_desk_connection_events_faculty_at_id", table_name=TABLE)
    op.create_index(
        "ix_desk_connection_events_faculty_at", TABLE, ["faculty_id", "at"], unique=False
    )
