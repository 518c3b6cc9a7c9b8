"""Queue position, expected wait and expiry (issue 12), on SQLite and PostgreSQL with a real Mosquitto."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text, update

from central_system import db as dbmod
from central_system import topics
from central_system.controllers import (
    ConsultationController,
    ConsultationEvent,
    ExpiryPolicy,
    QueueController,
)
from central_system.controllers.outbound import iso
from central_system.db import session_scope
from central_system.main import ConsultEaseApp
from central_system.models import Consultation, Faculty, Student
from tests.integration.controller_helpers import (
    bring_desk_online,
    db_url_of,
    response_payload,
    running_app,
    wait_until,
)
from tests.mqtt_probe import Probe, publish_raw

pytestmark = pytest.mark.timeout(120)

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def _events(controller: ConsultationController) -> list[ConsultationEvent]:
    events: list[ConsultationEvent] = []
    lock = threading.Lock()

    def on_event(event: ConsultationEvent) -> None:
        with lock:
            events.append(event)

    controller.add_listener(on_event)
    return events


def _set_created(cid: int, created: datetime) -> None:
    with session_scope() as session:
        session.execute(
            update(Consultation).where(Consultation.id == cid).values(created_at=created)
        )


def _seed_people(app: ConsultEaseApp, students: int, faculty: int) -> tuple[list[Any], list[Any]]:
    s = [
        app.controllers["student"].create_student(
            f"Student {i}", f"2026-{i:05d}", f"04A1B2{i:02X}", "CS"
        )
        for i in range(students)
    ]
    f = [
        app.controllers["faculty"].create_faculty(f"Dr. Queue {i}", "CS", f"q{i}@example.edu")
        for i in range(faculty)
    ]
    return s, f


@pytest.fixture
def central(make_settings, engine: Engine) -> Iterator[ConsultEaseApp]:
    """The headless central system; requests never expire on their own here (sweep by hand)."""
    settings = make_settings(
        database_url=db_url_of(engine),
        consultation_expire_after_s=0,
        consultation_day_end="",
    )
    with running_app(settings) as app:
        yield app


def test_positions_follow_answers_ties_cancellations_and_expiry(
    central: ConsultEaseApp, broker
) -> None:
    consultations: ConsultationController = central.controllers["consultation"]
    queue: QueueController = central.controllers["queue"]
    (s0, s1, s2, s3), (f0, f1) = _seed_people(central, 4, 2)
    for f in (f0, f1):
        bring_desk_online(broker.port, f.id, central.controllers["faculty"])
    events = _events(consultations)
    probe = Probe(broker.port, [topics.faculty_cancellations_topic(f0.id)])
    try:
        a = consultations.create_consultation(s0.id, f0.id, "First in the queue please")
        b = consultations.create_consultation(s1.id, f0.id, "Second in the queue please")
        c = consultations.create_consultation(s2.id, f0.id, "Third in the queue please")
        d = consultations.create_consultation(s3.id, f0.id, "Fourth in the queue please")
        other = consultations.create_consultation(s0.id, f1.id, "Alone in another queue")
        assert queue.waiting_counts() == {f0.id: 4, f1.id: 1}
        assert [queue.position(x.id).position for x in (a, b, c, d, other)] == [1, 2, 3, 4, 1]
        assert {p.waiting for p in (queue.position(x.id) for x in (a, b, c, d))} == {4}

        # Ties: b and c made at the same instant -> the earlier id is ahead; then d made
        # before both of them (a clock step on another kiosk) -> d is ahead of b and c.
        _set_created(a.id, T0)
        _set_created(b.id, T0 + timedelta(seconds=5))
        _set_created(c.id, T0 + timedelta(seconds=5))
        _set_created(d.id, T0 + timedelta(seconds=2))
        assert [queue.position(x.id).position for x in (a, d, b, c)] == [1, 2, 3, 4]

        # s0 sees both of their requests, each in its own queue.
        mine = queue.positions_for_student(s0.id)
        assert {cid: p.position for cid, p in mine.items()} == {a.id: 1, other.id: 1}
        assert mine[other.id].faculty_id == f1.id

        # The desk answers a: everyone behind moves up; a has left the queue.
        publish_raw(
            broker.port, topics.faculty_responses_topic(f0.id), response_payload(f0.id, a.id)
        )
        assert wait_until(lambda: consultations.get_consultation(a.id).status == "accepted")
        answered = consultations.get_consultation(a.id)
        assert answered.answered_at == answered.accepted_at
        assert answered.answer_s == pytest.approx(
            (answered.answered_at - answered.created_at).total_seconds(), abs=0.01
        )
        assert queue.position(a.id) is None
        assert [queue.position(x.id).position for x in (d, b, c)] == [1, 2, 3]

        # A cancellation ahead moves c up.
        consultations.cancel_consultation(b.id, s1.id)
        assert [queue.position(x.id).position for x in (d, c)] == [1, 2]
        assert queue.waiting_counts() == {f0.id: 2, f1.id: 1}

        # Expiry (a one-minute policy, swept "an hour later"): every pending request goes.
        consultations.expiry = ExpiryPolicy(after_s=60, day_end=None)
        later = datetime.now(UTC) + timedelta(hours=1)
        assert consultations.expire_due(now=later) == 3
        for x in (d, c, other):
            got = consultations.get_consultation(x.id)
            assert got.status == "expired" and got.expired_at == later
            assert queue.position(x.id) is None
        assert queue.waiting_counts() == {}
        assert consultations.expire_due(now=later) == 0  # nothing left: idempotent

        # The desk got the student's cancellation of b and the expiries of d and c.
        assert probe.wait_for(lambda ms: len(ms) >= 3)
        bodies = [json.loads(m.payload) for m in probe.messages]
        assert [x["consultation_id"] for x in bodies] == [b.id, d.id, c.id]
        assert "reason" not in bodies[0]  # a student's cancellation: the bytes it always had
        assert bodies[1] == {
            "type": "consultation_cancelled",
            "consultation_id": d.id,
            "student_name": "Student 3",
            "course_code": None,
            "cancelled_at": iso(later),
            "reason": "expired",
        }
        assert wait_until(
            lambda: (
                {(e.consultation_id, e.status) for e in events}
                >= {(d.id, "expired"), (c.id, "expired"), (other.id, "expired")}
            )
        )
    finally:
        probe.close()


def test_a_request_expires_by_itself_and_the_desk_is_told(
    make_settings, engine: Engine, broker
) -> None:
    settings = make_settings(
        database_url=db_url_of(engine),
        consultation_expire_after_s=1.5,
        consultation_day_end="",
        consultation_expiry_check_interval_s=0.2,
    )
    with running_app(settings) as app:
        (s0,), (f0,) = _seed_people(app, 1, 1)
        bring_desk_online(broker.port, f0.id, app.controllers["faculty"])
        probe = Probe(broker.port, [topics.faculty_cancellations_topic(f0.id)])
        try:
            consultations: ConsultationController = app.controllers["consultation"]
            c = consultations.create_consultation(s0.id, f0.id, "Will nobody answer me?")
            position = app.controllers["queue"].position(c.id)
            assert position.position == 1
            assert position.expires_at == c.created_at + timedelta(seconds=1.5)
            assert wait_until(lambda: consultations.get_consultation(c.id).status == "expired", 15)
            assert probe.wait_for(lambda ms: len(ms) >= 1)
            body = json.loads(probe.messages[0].payload)
            assert body["consultation_id"] == c.id and body["reason"] == "expired"
            # The desk answers too late: the request stays expired.
            publish_raw(
                broker.port, topics.faculty_responses_topic(f0.id), response_payload(f0.id, c.id)
            )
            assert not wait_until(
                lambda: consultations.get_consultation(c.id).status != "expired", 1.0
            )
        finally:
            probe.close()


def _add(session: Any, sid: int, fid: int, created: datetime, answered: datetime | None) -> int:
    row = Consultation(
        student_id=sid,
        faculty_id=fid,
        message="A question about the homework",
        status="accepted" if answered else "pending",
        created_at=created,
        accepted_at=answered,
        answered_at=answered,
        answer_s=(answered - created).total_seconds() if answered else None,
    )
    session.add(row)
    session.flush()
    return row.id


def test_wait_estimate_is_position_times_the_median_answer_interval(engine: Engine) -> None:
    now = T0 + timedelta(hours=3)
    with session_scope() as session:
        s = Student(name="S", student_id="1", rfid_uid="AABBCCDD")
        f, g, h = (Faculty(name=n) for n in ("F", "G", "H"))
        session.add_all([s, f, g, h])
        session.flush()
        # F: answers at +60, +180, +330, +400 s. Intervals from the later of the request and
        # the previous answer: 180-60=120, 330-300=30 (idle until the request came), 400-330=70.
        _add(session, s.id, f.id, T0, T0 + timedelta(seconds=60))
        _add(session, s.id, f.id, T0 + timedelta(seconds=10), T0 + timedelta(seconds=180))
        _add(session, s.id, f.id, T0 + timedelta(seconds=300), T0 + timedelta(seconds=330))
        _add(session, s.id, f.id, T0 + timedelta(seconds=310), T0 + timedelta(seconds=400))
        # An answer older than the 30-day window does not count.
        _add(session, s.id, f.id, T0 - timedelta(days=40), T0 - timedelta(days=40, seconds=-5))
        f1 = _add(session, s.id, f.id, T0 + timedelta(hours=2), None)
        f2 = _add(session, s.id, f.id, T0 + timedelta(hours=2, seconds=1), None)
        # G: three answers = two intervals, too little history.
        for k in range(3):
            _add(
                session,
                s.id,
                g.id,
                T0 + timedelta(minutes=k),
                T0 + timedelta(minutes=k, seconds=30),
            )
        g1 = _add(session, s.id, g.id, T0 + timedelta(hours=2), None)
        h1 = _add(session, s.id, h.id, T0 + timedelta(hours=2), None)  # H: no history at all
        fid, gid = f.id, g.id

    queue = QueueController(db=engine, expiry=ExpiryPolicy(after_s=0, day_end=None))
    assert queue.wait_estimate(fid, now).per_request_s == 70
    assert queue.wait_estimate(fid, now).samples == 3
    first, second = queue.position(f1, now), queue.position(f2, now)
    assert (first.position, first.expected_wait_s, first.history) == (1, 70, 3)
    assert (second.position, second.expected_wait_s) == (2, 140)
    assert first.expires_at is None  # this policy never expires
    too_little = queue.position(g1, now)
    assert (too_little.expected_wait_s, too_little.history) == (None, 2)
    assert queue.wait_estimate(gid, now).per_request_s is None
    nothing = queue.position(h1, now)
    assert (nothing.position, nothing.expected_wait_s, nothing.history) == (1, None, 0)


def test_migration_backfills_first_answers_of_existing_rows(db_url: str) -> None:
    engine = create_engine(db_url)
    cfg = dbmod.alembic_config(db_url)
    command.upgrade(cfg, "0001")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO students (id, name, student_id, rfid_uid, department, created_at) "
                "VALUES (1, 'S', '1', 'AABBCCDD', '', :t)"
            ),
            {"t": _db_time(engine, T0)},
        )
        conn.execute(
            text(
                "INSERT INTO faculty (id, name, department, status, desk_online, created_at) "
                "VALUES (1, 'F', '', 'offline', false, :t)"
            ),
            {"t": _db_time(engine, T0)},
        )
        for cid, status, col, seconds in [
            (1, "busy", "busy_at", 90),
            (2, "accepted", "accepted_at", 30),
            (3, "pending", None, None),
        ]:
            values = {"id": cid, "st": status, "c": _db_time(engine, T0)}
            extra = ""
            if col:
                extra = f", {col}"
                values["a"] = _db_time(engine, T0 + timedelta(seconds=seconds))
            columns = f"id, student_id, faculty_id, message, status, created_at{extra}"
            params = f":id, 1, 1, 'hello there all', :st, :c{', :a' if col else ''}"
            sql = f"INSERT INTO consultations ({columns}) VALUES ({params})"  # noqa: S608 - constants
            conn.execute(text(sql), values)
    engine.dispose()
    eng = dbmod.init_db(db_url)
    with session_scope() as session:
        rows = {c.id: c for c in session.query(Consultation).all()}
    assert rows[1].answered_at == T0 + timedelta(seconds=90) and rows[1].answer_s == pytest.approx(
        90
    )
    assert rows[2].answered_at == T0 + timedelta(seconds=30) and rows[2].answer_s == pytest.approx(
        30
    )
    assert rows[3].answered_at is None and rows[3].answer_s is None
    with session_scope() as session:
        session.add(
            Consultation(id=4, student_id=1, faculty_id=1, message="x" * 12, status="expired")
        )
    assert dbmod.schema_revision(eng) == ScriptDirectory.from_config(cfg).get_current_head()


def _db_time(engine: Engine, value: datetime) -> Any:
    """How the models store ``value``: naive UTC on SQLite, aware on PostgreSQL."""
    return value.replace(tzinfo=None) if engine.dialect.name == "sqlite" else value


def test_expiry_policy_in_local_time() -> None:
    from zoneinfo import ZoneInfo

    manila = ZoneInfo("Asia/Manila")  # UTC+8, no daylight saving
    policy = ExpiryPolicy(after_s=7200, day_end=time(18, 0), tz=manila)
    made = datetime(2026, 12, 1, 17, 0, tzinfo=manila)
    assert policy.expires_at(made) == datetime(2026, 12, 1, 18, 0, tzinfo=manila)  # day end first
    early = datetime(2026, 12, 1, 9, 0, tzinfo=manila)
    assert policy.expires_at(early) == early + timedelta(hours=2)  # age first
    evening = datetime(2026, 12, 1, 19, 0, tzinfo=manila)  # after today's cut-off
    assert policy.expires_at(evening) == evening + timedelta(hours=2)
    # The cutoff agrees with expires_at: expired exactly when created before cutoff(now).
    now = datetime(2026, 12, 1, 18, 30, tzinfo=manila)
    assert policy.cutoff(now) == datetime(2026, 12, 1, 18, 0, tzinfo=manila)
    for created in (made, early, evening - timedelta(hours=2), now - timedelta(minutes=1)):
        expires = policy.expires_at(created)
        assert expires is not None
        assert (expires <= now) == (created < policy.cutoff(now))
    midnight_only = ExpiryPolicy(after_s=0, day_end=time(0, 0), tz=manila)
    assert midnight_only.expires_at(made) == datetime(2026, 12, 2, 0, 0, tzinfo=manila)
    assert not ExpiryPolicy(after_s=0, day_end=None).enabled
    assert ExpiryPolicy(after_s=0, day_end=None).cutoff(now) is None
