"""A kiosk's request as it is written (controllers/consultation_controller.py): on a Core
connection, with its messages' outbox rows in the same transaction (on PostgreSQL in the same
statement), each message keeping its own row, and a student or faculty member deleted between
the admission read and the INSERT answered as such. Real Mosquitto, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, bindparam, delete, func, insert, select

from central_system import topics
from central_system.controllers.consultation_controller import (
    ConsultationController,
    FacultyNotFoundError,
    StudentNotFoundError,
)
from central_system.main import ConsultEaseApp
from central_system.models import AuditLog, Consultation, Faculty, Student
from central_system.models.base import utcnow
from central_system.models.outbox import OutboxMessage
from central_system.services.async_mqtt_service import MQTTServiceError
from tests.integration.controller_helpers import (
    bring_desk_online,
    db_url_of,
    running_app,
    seed,
    wait_until,
)
from tests.mqtt_probe import Probe

pytestmark = pytest.mark.timeout(120)

MESSAGE = "Could we go over my thesis draft, please?"
_AUDIT = AuditLog.__table__
# An audit row with bind parameters: a change to write in one statement with outbox rows.
_AUDIT_INSERT = insert(_AUDIT).values(
    actor=bindparam("a_actor"),
    action=bindparam("a_action"),
    success=True,
    created_at=bindparam("a_at", type_=_AUDIT.c.created_at.type),
)


@pytest.fixture
def central(make_settings, engine: Engine) -> Iterator[ConsultEaseApp]:
    with running_app(make_settings(database_url=db_url_of(engine))) as app:
        yield app


@pytest.fixture
def world(central: ConsultEaseApp, broker) -> dict[str, Any]:
    data = seed(central)
    bring_desk_online(broker.port, data["faculty"][0].id, central.controllers["faculty"])
    return data


def _count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def test_each_message_keeps_its_own_outbox_row_and_is_sent_after_the_commit(
    central: ConsultEaseApp, engine: Engine, broker, topic_prefix: str
) -> None:
    service = central.async_mqtt_service
    probe = Probe(broker.port, [f"{topic_prefix}/#"], qos=2)
    try:
        messages = [
            (f"{topic_prefix}/a", {"n": 1}, 1, False),
            (f"{topic_prefix}/b", "plain text", 2, False),
            (f"{topic_prefix}/a", {"n": 1}, 1, False),  # the same message twice
            (f"{topic_prefix}/c", {"n": 3}, 0, False),  # QoS 0: no outbox row
            (f"{topic_prefix}/d", {"n": 4}, 1, False),
        ]
        batch = service.batch(messages)
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                params = {"a_actor": "test", "a_action": "batch", "a_at": utcnow()}
                batch.write_with(conn, _AUDIT_INSERT, params)
            else:
                batch.write(conn)
                conn.commit()
            # Nothing is sent before the caller says the transaction committed.
            assert not probe.wait_for(lambda ms: len(ms) > 0, timeout=0.5)
            stored = {
                row.id: (row.topic, bytes(row.payload))
                for row in conn.execute(select(OutboxMessage.__table__))
            }
        durable = batch.durable
        assert [h.qos for h in durable] == [1, 2, 1, 1]
        assert len(set(batch.row_ids)) == 4
        for handle, row_id in zip(durable, batch.row_ids, strict=True):
            assert stored[row_id] == (handle.topic, handle.payload)
        if engine.dialect.name == "postgresql":
            assert _count(engine, _AUDIT) >= 1  # the change went in with the rows
        batch.committed()
        assert probe.wait_for(lambda ms: len(ms) == 5), [m.topic for m in probe.messages]
        assert sorted(m.topic.rsplit("/", 1)[1] for m in probe.messages) == list("aabcd")
        assert wait_until(lambda: _count(engine, OutboxMessage.__table__) == 0)
    finally:
        probe.close()


def test_returned_rows_that_do_not_match_the_messages_are_an_error(
    central: ConsultEaseApp, topic_prefix: str
) -> None:
    batch = central.async_mqtt_service.batch([(f"{topic_prefix}/a", {"n": 1}, 1, False)])
    payload = batch.durable[0].payload
    with pytest.raises(MQTTServiceError):
        batch.written([(7, f"{topic_prefix}/other", payload)])
    with pytest.raises(MQTTServiceError):
        batch.written([])
    batch.written([(7, f"{topic_prefix}/a", memoryview(payload))])  # (PostgreSQL's bytea)
    assert batch.row_ids == [7]


def _deleting_after_admission(
    controller: ConsultationController, engine: Engine, table: Any, key: int
) -> Callable[..., Any]:
    admit = controller._admit

    def admit_then_delete(*args: Any, **kwargs: Any) -> Any:
        admitted = admit(*args, **kwargs)
        with engine.begin() as other:  # another connection, as an administrator would
            other.execute(delete(table).where(table.c.id == key))
        return admitted

    return admit_then_delete


@pytest.mark.parametrize("gone", ["faculty", "student"])
def test_a_student_or_faculty_member_deleted_after_admission_is_a_clear_refusal(
    central: ConsultEaseApp,
    world: dict[str, Any],
    engine: Engine,
    broker,
    monkeypatch: pytest.MonkeyPatch,
    gone: str,
) -> None:
    controller: ConsultationController = central.controllers["consultation"]
    student, fid = world["students"][0], world["faculty"][0].id
    controller.create_consultation(student.id, fid, MESSAGE)  # sent before the probe listens
    assert wait_until(lambda: _count(engine, OutboxMessage.__table__) == 0)
    probe = Probe(broker.port, ["consultease/#"], qos=2)
    try:
        table, key = (
            (Faculty.__table__, fid) if gone == "faculty" else (Student.__table__, student.id)
        )
        monkeypatch.setattr(
            controller, "_admit", _deleting_after_admission(controller, engine, table, key)
        )
        error = FacultyNotFoundError if gone == "faculty" else StudentNotFoundError
        with pytest.raises(error):
            controller.create_consultation(student.id, fid, MESSAGE)
        # Nothing of the refused request: no row, no outbox row, no message. (The deletion
        # took the earlier request with it: ON DELETE CASCADE.)
        assert _count(engine, Consultation.__table__) == 0
        assert _count(engine, OutboxMessage.__table__) == 0
        request_topics = {topics.faculty_requests_topic(fid), topics.faculty_messages_topic(fid)}
        assert not probe.wait_for(
            lambda ms: any(m.topic in request_topics for m in ms), timeout=1.0
        ), [m.topic for m in probe.messages]
    finally:
        probe.close()
