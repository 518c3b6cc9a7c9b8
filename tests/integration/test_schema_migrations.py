"""The Alembic migrations build the models' schema, indexes included, on SQLite and PostgreSQL;
the newest migration (0015, the transition table's covering indexes) goes down and up again."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from central_system import db as dbmod
from central_system.models import DeskConnectionEvent
from central_system.models.base import Base

T0 = datetime(2026, 9, 1, tzinfo=UTC)
NEW_INDEXES = {"ix_desk_connection_events_faculty_at_id", "ix_desk_connection_events_at"}
OLD_INDEXES = {"ix_desk_connection_events_faculty_at", "ix_desk_connection_events_at"}


def _included(engine: Engine, table: str) -> dict[str, list[str]]:
    """Each index of ``table`` and its INCLUDE columns (PostgreSQL; [] on SQLite)."""
    return {
        str(ix["name"]): list(ix.get("dialect_options", {}).get("postgresql_include", []))
        for ix in inspect(engine).get_indexes(table)
    }


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []
    # Alembic does not compare an index's INCLUDE columns: compare them here.
    pg = engine.dialect.name == "postgresql"
    for table in Base.metadata.sorted_tables:
        reflected = _included(engine, table.name)
        for index in table.indexes:
            wanted = index.dialect_options["postgresql"]["include"] or []
            assert reflected[str(index.name)] == (list(wanted) if pg else []), index.name


def test_covering_index_migration_goes_down_and_up(engine: Engine, db_url: str) -> None:
    rows = [
        {"faculty_id": 1 + i % 7, "at": T0 + timedelta(minutes=i), "online": i % 2 == 0}
        for i in range(50)
    ]
    with dbmod.session_scope() as session:
        session.add_all(DeskConnectionEvent(reason="status", **row) for row in rows)
    cfg = dbmod.alembic_config(db_url)
    table = DeskConnectionEvent.__tablename__
    assert set(_included(engine, table)) == NEW_INDEXES
    engine.dispose()
    command.downgrade(cfg, "0014_uptime_online_at_end")
    assert set(_included(engine, table)) == OLD_INDEXES
    assert all(not include for include in _included(engine, table).values())
    command.upgrade(cfg, "head")
    assert set(_included(engine, table)) == NEW_INDEXES
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 50  # noqa: S608
    if engine.dialect.name == "postgresql":
        assert _included(engine, table) == {
            "ix_desk_connection_events_faculty_at_id": ["online"],
            "ix_desk_connection_events_at": ["faculty_id", "id", "online"],
        }


def test_postgresql_reads_a_desks_state_from_the_index_only(engine: Engine) -> None:
    """The uptime reports' per-desk probe (the newest row before a time) on PostgreSQL, once
    the table is vacuumed: an index-only scan in the reports' order, no sort, no table row."""
    if engine.dialect.name != "postgresql":
        return
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO desk_connection_events (faculty_id, at, online, reason) "
                "SELECT 1 + g % 200, :t0 + g * interval '1 minute', g % 2 = 0, 'status' "
                "FROM generate_series(1, 20000) g"
            ),
            {"t0": T0},
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE desk_connection_events"))
        plan = "\n".join(
            conn.execute(
                text(
                    "EXPLAIN (ANALYZE, COSTS OFF) SELECT online FROM desk_connection_events "
                    "WHERE faculty_id = 7 AND at < :t ORDER BY at DESC, id DESC LIMIT 1"
                ),
                {"t": T0 + timedelta(days=5)},
            ).scalars()
        )
    assert "Index Only Scan Backward using ix_desk_connection_events_faculty_at_id" in plan, plan
    assert "Heap Fetches: 0" in plan and "Sort" not in plan, plan
