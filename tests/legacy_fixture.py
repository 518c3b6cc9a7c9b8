"""The original ConsultEase's schema with realistic data, on SQLite or PostgreSQL (import tests)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

import bcrypt
from sqlalchemy import create_engine, text

BCRYPT_ADMIN_PASSWORD = "Old-Bcrypt-Pass-42"
# The original's default admin password (its `_create_default_admin`); the import must catch it.
ORIGINAL_DEFAULT = "TempPass123!"


def legacy_ddl(dialect: str, *, busy_at: bool, audit: bool, enum_names: bool) -> list[str]:
    ts = "TIMESTAMP WITHOUT TIME ZONE" if dialect == "postgresql" else "DATETIME"
    serial = "SERIAL PRIMARY KEY" if dialect == "postgresql" else "INTEGER PRIMARY KEY"
    statements = []
    if dialect == "postgresql":
        labels = ("PENDING", "ACCEPTED", "BUSY", "COMPLETED", "CANCELLED")
        if not enum_names:
            labels = tuple(label.lower() for label in labels)
        statements.append(
            "CREATE TYPE consultationstatus AS ENUM ("
            + ", ".join(f"'{label}'" for label in labels)
            + ")"
        )
        status_type = "consultationstatus"
    else:
        status_type = "VARCHAR(9)"
    statements += [
        f"""CREATE TABLE students (id {serial}, name VARCHAR NOT NULL, department VARCHAR,
            rfid_uid VARCHAR UNIQUE NOT NULL, created_at {ts}, updated_at {ts})""",
        f"""CREATE TABLE faculty (id {serial}, name VARCHAR NOT NULL, department VARCHAR,
            email VARCHAR UNIQUE, ble_id VARCHAR UNIQUE, image_path VARCHAR, status BOOLEAN,
            always_available BOOLEAN, last_seen {ts}, created_at {ts}, updated_at {ts})""",
        f"""CREATE TABLE consultations (id {serial}, student_id INTEGER, faculty_id INTEGER,
            request_message VARCHAR, course_code VARCHAR, status {status_type},
            requested_at {ts}, accepted_at {ts}, {"busy_at " + ts + "," if busy_at else ""}
            completed_at {ts})""",
        f"""CREATE TABLE admins (id {serial}, username VARCHAR UNIQUE NOT NULL,
            password_hash VARCHAR NOT NULL, salt VARCHAR NOT NULL, is_active BOOLEAN,
            force_password_change BOOLEAN, last_password_change {ts}, created_at {ts},
            updated_at {ts})""",
    ]
    if audit:
        statements.append(
            f"""CREATE TABLE audit_logs (id {serial}, user_id INTEGER, username VARCHAR,
            action VARCHAR, resource VARCHAR, details TEXT, ip_address VARCHAR,
            user_agent VARCHAR, success BOOLEAN, timestamp {ts})"""
        )
    return statements


def create_legacy_db(
    url: str,
    now: datetime,
    *,
    busy_at: bool = True,
    audit: bool = True,
    enum_names: bool = False,
) -> None:
    """Create the original's schema at ``url`` and fill it; ``now`` is naive UTC.

    Data: faculty 3, 7, 12 (faculty 5 was deleted); students 1-3 good (one card in lower
    case), 4 and 5 holding the same card once normalised, 6 with the original's sample
    card "TESTCARD123"; consultations covering every status, one of a deleted faculty
    member, one of a deleted student, a recent and an old pending request; admins with
    the default password, a bcrypt password and an old salted SHA-256 hash.
    """
    engine = create_engine(url)
    dialect = engine.dialect.name
    st = (lambda s: s.upper()) if enum_names else (lambda s: s)
    h = timedelta(hours=1)
    t0 = now - timedelta(days=30)
    salt = "c2FsdHNhbHQ="
    with engine.begin() as conn:
        for statement in legacy_ddl(dialect, busy_at=busy_at, audit=audit, enum_names=enum_names):
            conn.execute(text(statement))
        conn.execute(
            text(
                "INSERT INTO faculty (id, name, department, email, ble_id, status, "
                "always_available, last_seen, created_at) VALUES (:id, :n, :d, :e, :b, :s, :a, :ls, :c)"
            ),
            [
                {"id": 3, "n": "Dr. José Rizal", "d": "Computer Science", "e": "Jose.Rizal@Uni.edu",
                 "b": "aa:bb:cc:dd:ee:01", "s": True, "a": False, "ls": now - h, "c": t0},
                {"id": 7, "n": "Prof. 王小明", "d": "Physics", "e": "wang@uni.edu",
                 "b": "beacon-7", "s": False, "a": True, "ls": None, "c": t0},
                {"id": 12, "n": "Dr. Zoë Ødegård", "d": "", "e": None,
                 "b": None, "s": False, "a": False, "ls": None, "c": t0},
            ],
        )  # fmt: skip
        conn.execute(
            text(
                "INSERT INTO students (id, name, department, rfid_uid, created_at) "
                "VALUES (:id, :n, :d, :u, :c)"
            ),
            [
                {"id": 1, "n": "María Clara de los Santos", "d": "CS", "u": "a1b2c3d4", "c": t0},
                {"id": 2, "n": "Nguyễn Văn An", "d": "EE", "u": "04:AB:CD:EF", "c": t0},
                {"id": 3, "n": "Ahmed Al-Farsi", "d": "ME", "u": "DEADBEEF", "c": t0},
                {"id": 4, "n": "Collide One", "d": "", "u": "0a0b0c0d", "c": t0},
                {"id": 5, "n": "Collide Two", "d": "", "u": "0A0B0C0D", "c": t0},
                {"id": 6, "n": "Alice Johnson", "d": "CS", "u": "TESTCARD123", "c": t0},
            ],
        )
        rows = [
            (1, 1, 3, "Thesis chapter 2", "CS 499", st("completed"), t0, t0 + h, t0 + 2 * h),
            (2, 2, 7, "Lab report", "PHY 101", st("cancelled"), t0 + h, None, None),
            (3, 1, 5, "To a deleted faculty member", None, st("completed"), t0, t0, t0),
            (4, 4, 3, "From a refused student", None, st("pending"), now - h, None, None),
            (5, 2, 3, "Recent pending ¿qué tal?", "CS 201", st("pending"), now - h, None, None),
            (6, 3, 7, "Old pending", None, st("pending"), now - timedelta(days=3), None, None),
            (7, 3, 12, "Accepted, stored by enum name", None, "ACCEPTED", t0, t0 + h, None),
            (8, 1, 3, "Busy", "A-VERY-LONG-COURSE-CODE-123", st("busy"), t0, None, None),
            (9, 99, 3, "From a deleted student", None, st("completed"), t0, t0, t0),
        ]
        conn.execute(
            text(
                "INSERT INTO consultations (id, student_id, faculty_id, request_message, "
                "course_code, status, requested_at, accepted_at, completed_at) "
                "VALUES (:id, :s, :f, :m, :c, :st, :r, :a, :co)"
            ),
            [
                dict(zip(("id", "s", "f", "m", "c", "st", "r", "a", "co"), r, strict=True))
                for r in rows
            ],
        )
        if busy_at:
            conn.execute(text("UPDATE consultations SET busy_at = :b WHERE id = 8"), {"b": t0 + h})
        default_hash = bcrypt.hashpw(ORIGINAL_DEFAULT.encode(), bcrypt.gensalt(4)).decode()
        good_hash = bcrypt.hashpw(BCRYPT_ADMIN_PASSWORD.encode(), bcrypt.gensalt(12)).decode()
        sha = hashlib.sha256(salt.encode() + b"Some-Old-Secret-1").hexdigest()
        conn.execute(
            text(
                "INSERT INTO admins (id, username, password_hash, salt, is_active, "
                "force_password_change, created_at) VALUES (:id, :u, :p, :s, true, :f, :c)"
            ),
            [
                {"id": 1, "u": "admin", "p": default_hash, "s": "x", "f": True, "c": t0},
                {"id": 2, "u": "registrar", "p": good_hash, "s": "x", "f": False, "c": t0},
                {"id": 3, "u": "oldtimer", "p": sha, "s": salt, "f": False, "c": t0},
            ],
        )
        if audit:
            conn.execute(
                text(
                    "INSERT INTO audit_logs (id, user_id, username, action, resource, details, "
                    "ip_address, success, timestamp) VALUES (:id, :uid, :u, :a, :r, :d, :ip, :s, :t)"
                ),
                [
                    {"id": 1, "uid": 2, "u": "registrar", "a": "login", "r": "admin",
                     "d": "ok", "ip": "10.0.0.5", "s": True, "t": t0},
                    {"id": 2, "uid": None, "u": None, "a": "faculty_delete", "r": "faculty:5",
                     "d": None, "ip": None, "s": True, "t": t0 + h},
                ],
            )  # fmt: skip
    engine.dispose()
