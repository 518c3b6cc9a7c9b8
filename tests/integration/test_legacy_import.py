"""``consultease import-legacy``: the original ConsultEase's database into ours, SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from central_system import db as dbmod
from central_system.cli import main as cli_main
from central_system.config import reset_settings_cache
from central_system.controllers import FacultyController, StudentController
from central_system.controllers.admin_controller import AdminController
from central_system.controllers.legacy_import import (
    ImportOptions,
    ImportRefusedError,
    import_legacy,
    legacy_status,
)
from central_system.models import Admin, AuditLog, Consultation, Faculty, LegacyImportMap, Student
from tests.conftest import PG_ADMIN_URL
from tests.legacy_fixture import BCRYPT_ADMIN_PASSWORD, ORIGINAL_DEFAULT, create_legacy_db

# The import's "now" (the legacy data's times are relative to it); the real time, so the
# running central system's own expiry (issue 12) sees the recent pending request as recent.
NOW = datetime.now(UTC).replace(second=0, microsecond=0)


@pytest.fixture
def legacy_url(db_url: str, tmp_path: Path) -> Iterator[str]:
    """The original's database, same engine as the target: SQLite is an older release (no
    busy_at, no audit_logs, mixed enum spellings); PostgreSQL has a native enum of names."""
    if db_url.startswith("sqlite"):
        url = f"sqlite:///{tmp_path / 'legacy.db'}"
        create_legacy_db(url, NOW.replace(tzinfo=None), busy_at=False, audit=False)
        yield url
        return
    name = f"legacy_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    create_legacy_db(url, NOW.replace(tzinfo=None), enum_names=True)
    # As an administrator types it: plain postgresql://, which must mean psycopg 3.
    yield url.replace("postgresql+psycopg://", "postgresql://")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _import(source: str, target: str, **kw: object) -> object:
    options = ImportOptions(source_url=source, now=NOW, **kw)  # type: ignore[arg-type]
    return import_legacy(options, target)


def _snapshot(url: str) -> dict[str, int]:
    engine = dbmod.create_db_engine(url)
    with engine.connect() as conn:
        counts = {
            m.__tablename__: int(conn.scalar(select(func.count()).select_from(m)) or 0)
            for m in (Faculty, Student, Consultation, Admin, AuditLog, LegacyImportMap)
        }
    engine.dispose()
    return counts


def test_import_keeps_what_it_should_refuses_what_it_must_and_a_rerun_adds_nothing(
    db_url: str, legacy_url: str
) -> None:
    report = _import(legacy_url, db_url)
    t = report.tables  # type: ignore[attr-defined]
    assert (t["faculty"].read, t["faculty"].imported) == (3, 3)
    assert (t["students"].read, t["students"].imported, t["students"].refused_count) == (6, 3, 3)
    assert (t["consultations"].read, t["consultations"].imported) == (9, 6)
    assert t["admins"].imported == 3
    refused = {
        reason: sorted(ids)
        for name in ("students", "consultations")
        for reason, ids in t[name].refused.items()
    }
    assert refused == {
        "card 0A0B0C0D is held by several students once normalised (ids 4, 5)": [4, 5],
        "card UID is not 4–64 hexadecimal digits": [6],
        "its faculty member was deleted in the original": [3],
        "its student was not imported (see students)": [4],
        "its student was deleted in the original": [9],
    }
    sqlite = db_url.startswith("sqlite")
    assert ("consultations.busy_at" in report.missing) is sqlite  # type: ignore[attr-defined]
    assert report.pending_kept == 1 and report.pending_closed == 1  # type: ignore[attr-defined]

    dbmod.init_db(db_url)
    with dbmod.session_scope() as s:
        faculty = {f.id: f for f in s.scalars(select(Faculty))}
        assert sorted(faculty) == [3, 7, 12]  # the desks' ids, kept
        assert faculty[3].name == "Dr. José Rizal" and faculty[3].email == "jose.rizal@uni.edu"
        assert faculty[3].ble_id == "AA:BB:CC:DD:EE:01"
        assert faculty[7].name == "Prof. 王小明" and faculty[7].ble_id is None  # not a MAC/UUID
        assert all(f.status == "offline" and not f.desk_online for f in faculty.values())
        students = {st.rfid_uid: st for st in s.scalars(select(Student))}
        assert sorted(students) == ["04ABCDEF", "A1B2C3D4", "DEADBEEF"]  # normalised, upper
        assert students["A1B2C3D4"].name == "María Clara de los Santos"
        assert students["A1B2C3D4"].student_id == "LEGACY-1"
        by_message = {c.message: c for c in s.scalars(select(Consultation)).unique()}
        assert set(by_message) == {
            "Thesis chapter 2",
            "Lab report",
            "Recent pending ¿qué tal?",
            "Old pending",
            "Accepted, stored by enum name",
            "Busy",
        }
        done = by_message["Thesis chapter 2"]
        assert done.status == "completed" and done.faculty_id == 3
        assert done.created_at == NOW - timedelta(days=30)  # naive read as UTC (the default)
        assert done.completed_at == NOW - timedelta(days=30) + timedelta(hours=2)
        assert done.answered_at == NOW - timedelta(days=30) + timedelta(hours=1)
        assert done.answer_s == 3600.0
        assert by_message["Lab report"].status == "cancelled"
        assert by_message["Accepted, stored by enum name"].status == "accepted"
        busy = by_message["Busy"]
        assert busy.status == "busy" and busy.course_code == "A-VERY-LONG-COUR"
        assert (busy.busy_at is None) is sqlite
        recent = by_message["Recent pending ¿qué tal?"]
        assert recent.status == "pending" and recent.status_note is None
        old = by_message["Old pending"]
        assert old.status == "expired" and old.expired_at == NOW
        assert old.status_note is not None and "send a new request" in old.status_note
        admins = {a.username: a for a in s.scalars(select(Admin))}
        assert admins["registrar"].password_hash.startswith("$2b$")
        assert not admins["registrar"].must_change_password
        assert admins["admin"].password_hash.startswith("!reset-required:")  # default password
        assert admins["oldtimer"].password_hash.startswith("!reset-required:")  # salted SHA-256
        audit = list(s.scalars(select(AuditLog)))
        if sqlite:
            assert audit == []  # this older release had no audit_logs table
        else:
            assert sorted(a.action for a in audit) == ["legacy.faculty_delete", "legacy.login"]
            assert all(a.details and a.details["imported"] for a in audit)
    rendered = report.render()  # type: ignore[attr-defined]
    assert ORIGINAL_DEFAULT not in rendered and "consultease admin reset-password admin" in rendered

    # Second run: nothing new.
    before = _snapshot(db_url)
    again = _import(legacy_url, db_url)
    assert _snapshot(db_url) == before
    assert all(t.imported == 0 for t in again.tables.values())  # type: ignore[attr-defined]
    assert again.tables["consultations"].already == 6  # type: ignore[attr-defined]

    # The next faculty member added here does not collide with a kept id (PG sequence moved).
    dbmod.dispose_db()
    dbmod.init_db(db_url)
    # A card tapped at the kiosk (as the reader sends it) finds the imported student.
    tapped = StudentController().get_by_rfid("a1:b2:c3:d4")
    assert tapped is not None and tapped.name == "María Clara de los Santos"
    assert FacultyController().create_faculty("Dr. New", email="new@uni.edu").id == 13


def test_bcrypt_admin_signs_in_once_and_is_then_argon2id_the_default_one_cannot(
    db_url: str, legacy_url: str
) -> None:
    _import(legacy_url, db_url)
    dbmod.init_db(db_url)
    admin = AdminController()
    assert not admin.authenticate("registrar", "wrong-password-1")
    result = admin.authenticate("registrar", BCRYPT_ADMIN_PASSWORD)
    assert result and not result.must_change_password
    with dbmod.session_scope() as s:
        stored = s.scalar(select(Admin.password_hash).where(Admin.username == "registrar"))
    assert stored is not None and stored.startswith("$argon2id$")
    assert admin.authenticate("registrar", BCRYPT_ADMIN_PASSWORD)  # still the same password
    # The original's default password and the SHA-256 account are not accepted...
    assert not admin.authenticate("admin", ORIGINAL_DEFAULT)
    assert not admin.authenticate("oldtimer", "Some-Old-Secret-1")
    # ... until reset through the reset path, which forces a change at login.
    admin.reset_password("admin", "Temporary-Pass-991", actor="cli")
    reset = admin.authenticate("admin", "Temporary-Pass-991")
    assert reset and reset.must_change_password


def test_faculty_ids_in_use_are_refused_and_nothing_is_written(
    db_url: str, legacy_url: str
) -> None:
    dbmod.init_db(db_url)
    FacultyController().create_faculty("Someone Else")  # takes id 1
    with dbmod.session_scope() as s:
        s.add(Faculty(id=7, name="Dr. Already Here"))
    dbmod.dispose_db()
    before = _snapshot(db_url)
    with pytest.raises(ImportRefusedError) as err:
        _import(legacy_url, db_url)
    assert "id 7 (Prof. 王小明) is already used here by 'Dr. Already Here'" in str(err.value)
    assert "Nothing was written" in str(err.value)
    assert _snapshot(db_url) == before


def test_cli_dry_run_reports_and_writes_nothing_then_the_real_run_imports(
    db_url: str,
    legacy_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CONSULTEASE_DATABASE_URL", db_url)
    reset_settings_cache()
    assert cli_main(["import-legacy", "--from", legacy_url, "--dry-run"]) == 0
    out = capsys.readouterr()
    assert "Dry run: nothing was written." in out.out
    assert "refused consultations (1): its faculty member was deleted in the original" in out.out
    assert "Pending requests:" in out.out
    assert _snapshot(db_url)["faculty"] == 0
    assert cli_main(["import-legacy", "--from", legacy_url, "--timezone", "Asia/Manila"]) == 0
    out = capsys.readouterr()
    assert "Imported in one transaction" in out.out and "students:" in out.err  # progress
    dbmod.init_db(db_url)
    with dbmod.session_scope() as s:
        first = s.scalar(select(Consultation).where(Consultation.message == "Thesis chapter 2"))
        assert first is not None
        # A naive time read as Manila time (UTC+8) is 8 hours earlier in UTC.
        assert first.created_at == NOW - timedelta(days=30, hours=8)
    assert cli_main(["import-legacy", "--from", legacy_url, "--timezone", "Mars/Base"]) == 1
    assert "unknown time zone" in capsys.readouterr().err
    # An unreachable target: one line, exit 1, no password.
    unreachable = "postgresql://nobody:s3cret-pw@127.0.0.1:1/none"
    assert cli_main(["import-legacy", "--from", legacy_url, "--to", unreachable]) == 1
    err = capsys.readouterr().err
    assert "nothing was written" in err and "s3cret-pw" not in err and "Traceback" not in err


def test_legacy_status_accepts_values_and_names() -> None:
    assert [legacy_status(v) for v in ("pending", "PENDING", "ConsultationStatus.BUSY")] == [
        "pending",
        "pending",
        "busy",
    ]
    assert legacy_status("declined") is None and legacy_status(None) is None


def test_config_json_becomes_a_toml_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    legacy = tmp_path / "config.json"
    legacy.write_text(
        """{"database": {"type": "postgresql", "host": "db.local", "port": 5433,
             "name": "consultease", "user": "kiosk", "password": "p@ss word"},
            "mqtt": {"broker_host": "10.0.0.2", "broker_port": 8883, "use_tls": true,
                     "ca_certs": "/etc/ssl/ca.pem", "username": "central",
                     "password": "brökerpass", "client_id": "central_system"},
            "ui": {"fullscreen": true}}""",
        encoding="utf-8",
    )
    out = tmp_path / "consultease.toml"
    assert cli_main(["import-legacy", "--config", str(legacy), "--write-config", str(out)]) == 0
    assert os.stat(out).st_mode & 0o077 == 0  # holds the broker password: owner only
    notes = capsys.readouterr().err
    assert "client_id" in notes
    toml_text = out.read_text(encoding="utf-8")
    assert "p@ss word" not in toml_text and "p%40ss+word" not in toml_text  # DB password hidden
    monkeypatch.setenv("CONSULTEASE_CONFIG", str(out))
    reset_settings_cache()
    from central_system.config import get_settings

    settings = get_settings()
    assert (settings.mqtt_host, settings.mqtt_port) == ("10.0.0.2", 8883)
    assert settings.mqtt_username == "central"
    assert settings.mqtt_password is not None
    assert settings.mqtt_password.get_secret_value() == "brökerpass"
    assert str(settings.mqtt_tls_ca_certs) == "/etc/ssl/ca.pem" and settings.fullscreen
    assert (
        "consultease import-legacy --from 'postgresql://kiosk:***@db.local:5433/consultease'"
        in (toml_text)
    )


@pytest.mark.timeout(120)
def test_a_deployed_desk_of_a_legacy_faculty_id_works_after_the_import_untouched(
    db_url: str, legacy_url: str, make_settings, broker
) -> None:
    """Faculty 3's desk, flashed for the original (firmware mode, id 3 compiled in), gets the
    recent pending request again and the next new one on faculty 3's topic; its ACKNOWLEDGE
    is accepted."""
    from faculty_desk_unit import DeskUnit
    from tests.integration.controller_helpers import running_app, wait_until

    report = _import(legacy_url, db_url)
    assert report.pending_kept >= 1  # type: ignore[attr-defined]
    settings = make_settings(
        database_url=db_url,
        desk_offline_after_s=600,
        liveness_check_interval_s=0.5,
        consultation_day_end=None,  # the recent request may be from before midnight
    )
    with running_app(settings) as app:
        desk = DeskUnit(3, "Dr. José Rizal", "127.0.0.1", broker.port, mode="firmware").start()
        try:
            assert desk.wait_connected(10)
            faculty = app.controllers["faculty"]
            assert wait_until(lambda: faculty.get_faculty(3).desk_online, 15)
            with dbmod.session_scope() as s:
                recent = s.scalar(
                    select(Consultation).where(Consultation.message == "Recent pending ¿qué tal?")
                )
                assert recent is not None and recent.status == "pending"
                maria = s.scalar(select(Student).where(Student.rfid_uid == "A1B2C3D4"))
                assert maria is not None
            # The request left pending in the original reaches the desk again...
            assert desk.wait_for_request(15, cid=recent.id) is not None, desk.received_raw
            # ... and so does the next one, on faculty 3's /messages topic.
            controller = app.controllers["consultation"]
            new = controller.create_consultation(maria.id, 3, "Office hours after the switch?")
            request = desk.wait_for_request(15, cid=new.id)
            # Folded to what the firmware's ASCII font draws (docs/mqtt-topics.md).
            assert request is not None and request.student_name == "Maria Clara de los Santos"
            topics_seen = {t for t, _ in desk.received_raw}
            # Only faculty 3's topics (a re-send may be preceded by a withdrawal on /cancellations).
            assert "consultease/faculty/3/messages" in topics_seen
            assert topics_seen <= {
                "consultease/faculty/3/messages",
                "consultease/faculty/3/cancellations",
            }
            assert desk.acknowledge(new.id) is not None
            assert wait_until(
                lambda: controller.get_consultation(new.id).status == "accepted", 15
            ), controller.get_consultation(new.id)
        finally:
            desk.stop()


def test_a_failure_half_way_leaves_the_target_as_it_was(
    db_url: str, legacy_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One transaction: faculty, students and consultations were written when the audit step
    fails, and none of them stays."""
    from central_system.controllers import legacy_import as module

    dbmod.init_db(db_url)
    dbmod.dispose_db()
    before = _snapshot(db_url)

    def broken(self: object, conn: object) -> None:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(module._Importer, "_audit", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        _import(legacy_url, db_url)
    assert _snapshot(db_url) == before
    monkeypatch.undo()
    report = _import(legacy_url, db_url)  # and a later run imports everything
    assert report.tables["consultations"].imported == 6  # type: ignore[attr-defined]


def test_an_older_postgresql_database_without_busy_at_or_audit_logs(db_url: str) -> None:
    """The oldest PostgreSQL schema: no busy_at, no audit_logs, an enum of lower-case values."""
    name = f"legacy_old_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception:
        pytest.skip("PostgreSQL not reachable")
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    try:
        legacy = create_engine(url)
        with legacy.begin() as conn:
            from tests.legacy_fixture import legacy_ddl

            for statement in legacy_ddl("postgresql", busy_at=False, audit=False, enum_names=False):
                conn.execute(text(statement))
            conn.execute(
                text("INSERT INTO faculty (id, name, email) VALUES (21, 'Dr. Ñandú', NULL)")
            )
            conn.execute(
                text("INSERT INTO students (id, name, rfid_uid) VALUES (1, 'Zoë', 'ab:cd:ef:01')")
            )
            conn.execute(
                text(
                    "INSERT INTO consultations (id, student_id, faculty_id, request_message, status, "
                    "requested_at, accepted_at) VALUES (1, 1, 21, 'hi', 'accepted', :t, :t)"
                ),
                {"t": NOW.replace(tzinfo=None) - timedelta(days=1)},
            )
        legacy.dispose()
        report = _import(url, db_url, timezone="UTC")
        assert set(report.missing) >= {"consultations.busy_at", "audit_logs"}  # type: ignore[attr-defined]
        assert report.tables["consultations"].imported == 1  # type: ignore[attr-defined]
        dbmod.init_db(db_url)
        with dbmod.session_scope() as s:
            c = s.scalar(select(Consultation))
            assert c is not None and c.status == "accepted" and c.faculty_id == 21
            assert c.student.rfid_uid == "ABCDEF01" and c.busy_at is None
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _consultation_indexes(url: str) -> list[str]:
    engine = dbmod.create_db_engine(url)
    try:
        from sqlalchemy import inspect

        return sorted(str(i["name"]) for i in inspect(engine).get_indexes("consultations"))
    finally:
        engine.dispose()


def test_indexes_rebuilt_after_a_big_import_and_restored_when_it_fails(
    db_url: str, legacy_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big import drops the consultation indexes and builds them once at the end;
    a failure (or a dry run) gives them back with the rest of the transaction."""
    from central_system.controllers import legacy_import as module

    monkeypatch.setattr(module, "REBUILD_INDEXES_FROM", 1)  # the fixture's 9 rows count as big
    dbmod.init_db(db_url)
    dbmod.dispose_db()
    indexes = _consultation_indexes(db_url)
    assert len(indexes) >= 5
    before = _snapshot(db_url)
    with monkeypatch.context() as m:
        m.setattr(module._Importer, "_audit", lambda self, conn: 1 / 0)
        with pytest.raises(ZeroDivisionError):
            _import(legacy_url, db_url)
    assert _snapshot(db_url) == before and _consultation_indexes(db_url) == indexes
    _import(legacy_url, db_url, dry_run=True)
    assert _snapshot(db_url) == before and _consultation_indexes(db_url) == indexes
    messages: list[str] = []
    report = _import(legacy_url, db_url, progress=messages.append)
    assert report.tables["consultations"].imported == 6  # type: ignore[attr-defined]
    assert _consultation_indexes(db_url) == indexes
    assert any(f"{len(indexes)} indexes rebuilt" in m for m in messages), messages  # taken


def test_legacy_cards_are_normalised_exactly_as_the_kiosk_reader_does() -> None:
    """The import's normalisation (the student controller's) is the reader's, so an imported
    card is found when it is tapped."""
    from central_system.controllers.student_controller import normalize_rfid_uid
    from central_system.services.rfid import normalize_uid

    for raw in ("a1b2c3d4", "04:AB:CD:EF", "0x0a0b0c0d", " de-ad-be-ef ", "04 a1 b2 c3 d4 e5 f6"):
        assert normalize_rfid_uid(raw) == normalize_uid(raw)
