"""Backup and restore round-trip every table, on SQLite (online backup API) and PostgreSQL (pg_dump)."""

from __future__ import annotations

import os
import stat
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, MetaData, Table, select, text

from central_system import db as dbmod
from central_system.cli import main as cli_main
from central_system.models import (
    Admin,
    AdminSessionToken,
    AnalyticsRollupState,
    AuditLog,
    Base,
    Consultation,
    ConsultationStatsDaily,
    ConsultationStatsHourly,
    ConsultationStatsWeekly,
    DeskConnectionEvent,
    DeskUnit,
    DeskUptimeDaily,
    DeskUptimeWeekly,
    Faculty,
    KioskToken,
    LegacyDeskLogin,
    LegacyImportMap,
    OutboxMessage,
    Student,
    utcnow,
)
from central_system.models.web import AccountInvite, WebSession
from central_system.services.backup import BackupError, backup_database, restore_database


def _populate(engine: Engine) -> None:
    with dbmod.session_scope() as s:
        admin = Admin(username="alice", password_hash="$argon2id$v=19$m=8,t=1,p=1$x$y")
        faculty = Faculty(name="Dr. Ada Lovelace", department="CS", email="ada@example.edu")
        student = Student(name="Émile Zola", student_id="2024-0001", rfid_uid="04A1B2C3")
        s.add_all([admin, faculty, student])
        s.flush()
        s.add(
            DeskUnit(
                faculty_id=faculty.id,
                mqtt_username="desk-1",
                password_hash="$7$1$a$b",
                last_heartbeat={"uptime": 123, "wifi_rssi": -60},
                last_heartbeat_at=utcnow(),
            )
        )
        s.add(
            Consultation(
                student_id=student.id,
                faculty_id=faculty.id,
                message="Question about recursion — ünïcode ✓",
                course_code="CS101",
            )
        )
        s.add(
            AuditLog(
                actor="admin:alice",
                action="login",
                target="alice",
                success=True,
                details={"k": "v"},
                admin_id=admin.id,
            )
        )
        s.add(
            OutboxMessage(topic="consultease/faculty/1/messages", payload=b"\x00\xffCID:1", qos=2)
        )
        s.add(LegacyImportMap(kind="student", legacy_id=41, new_id=student.id))
        s.add(KioskToken(name="lobby-1", token_hash="a" * 64))
        s.add(
            AdminSessionToken(
                token_hash="b" * 64, admin_id=admin.id, expires_at=utcnow() + timedelta(hours=1)
            )
        )
        s.add(LegacyDeskLogin(id=1, username="old-shared", password_hash="$7$1$a$b"))
        day = utcnow().replace(hour=0, minute=0, second=0, microsecond=0)
        s.add(ConsultationStatsHourly(hour=day, requests=3, answered=2, accepted=2, expired=1))
        s.add(ConsultationStatsDaily(day=day, faculty_id=faculty.id, requests=3, answered=2))
        s.add(AnalyticsRollupState(name="consultations", until=day))
        s.add(ConsultationStatsWeekly(week=day, faculty_id=faculty.id, requests=3, h05=2))
        s.add(DeskConnectionEvent(faculty_id=faculty.id, at=day, online=True, reason="status"))
        s.add(
            DeskUptimeDaily(
                faculty_id=faculty.id,
                day=day,
                online_s=80000.5,
                drops=1,
                lead_off_s=0.0,
                inner_off_s=6400.0,
                trail_run_s=0.0,
                online_at_end=True,
            )
        )
        s.add(
            DeskUptimeWeekly(
                faculty_id=faculty.id,
                week=day,
                online_s=560000.0,
                drops=2,
                first_close_run_s=120.0,
                first_close_end_s=120.0,
                other_max_s=600.0,
                trail_run_s=0.0,
            )
        )
        later = utcnow() + timedelta(hours=1)
        s.add(WebSession(token_hash="c" * 64, account_id=admin.id, expires_at=later))
        s.add(
            AccountInvite(
                token_hash="d" * 64,
                faculty_id=faculty.id,
                username="ada",
                created_by="admin:alice",
                expires_at=later,
            )
        )


def _snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    meta = MetaData()
    tables = [*Base.metadata.sorted_tables, Table("alembic_version", meta, autoload_with=engine)]
    out: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in tables:
            order = list(table.primary_key.columns) or list(table.columns)
            out[table.name] = [tuple(r) for r in conn.execute(select(table).order_by(*order))]
    return out


def test_backup_and_restore_round_trip_every_table(db_url: str, tmp_path: Path) -> None:
    engine = dbmod.init_db(db_url)
    _populate(engine)
    before = _snapshot(engine)
    assert all(before.values()), {k: len(v) for k, v in before.items()}  # every table has rows

    backup = backup_database(tmp_path / "backups" / "consultease.backup", db_url)
    assert stat.S_IMODE(os.stat(backup).st_mode) == 0o600

    # Damage the database after the backup: delete, change, add.
    with dbmod.session_scope() as s:
        s.execute(text("DELETE FROM consultations"))
        s.execute(text("DELETE FROM mqtt_outbox"))
        s.execute(text("UPDATE faculty SET name = 'changed'"))
        s.add(Student(name="Later", student_id="2024-0002", rfid_uid="FFFF"))
    assert _snapshot(engine) != before

    dbmod.dispose_db()  # as in production: the kiosk is stopped while restoring
    restore_database(backup, db_url)
    engine = dbmod.init_db(db_url)
    assert _snapshot(engine) == before
    assert dbmod.schema_revision(engine) == before["alembic_version"][0][0]
    # Sequences came back too: new rows get fresh ids.
    with dbmod.session_scope() as s:
        s.add(Student(name="After", student_id="2024-0003", rfid_uid="EEEE"))
    dbmod.dispose_db()


def test_restore_refuses_the_wrong_kind_of_file(db_url: str, tmp_path: Path) -> None:
    dbmod.init_db(db_url)
    bogus = tmp_path / "not-a-backup"
    bogus.write_bytes(b"hello, this is not a database backup")
    with pytest.raises(BackupError, match="not a"):
        restore_database(bogus, db_url)
    with pytest.raises(BackupError, match="no backup file"):
        restore_database(tmp_path / "missing", db_url)
    dbmod.dispose_db()


def test_cli_backup_and_restore(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONSULTEASE_DATABASE_URL", sqlite_url)
    engine = dbmod.init_db(sqlite_url)
    _populate(engine)
    before = _snapshot(engine)
    dbmod.dispose_db()
    out = tmp_path / "cli.backup"
    assert cli_main(["backup", str(out)]) == 0
    engine = dbmod.init_db(sqlite_url)
    with dbmod.session_scope() as s:
        s.execute(text("DELETE FROM audit_log"))
    dbmod.dispose_db()
    assert cli_main(["restore", str(out), "--yes"]) == 0
    assert _snapshot(dbmod.init_db(sqlite_url)) == before
    assert cli_main(["restore", str(tmp_path / "nope"), "--yes"]) != 0
    assert cli_main(["backup", str(tmp_path / "timer") + "/"]) == 0  # directory: timestamped file
    made = list((tmp_path / "timer").glob("consultease-*.backup"))
    assert len(made) == 1 and made[0].read_bytes().startswith(b"SQLite format 3")
