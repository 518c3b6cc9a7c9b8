"""Student and faculty CRUD with validation, on SQLite and PostgreSQL (no broker needed)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from central_system.controllers import FacultyController, StudentController
from central_system.controllers.faculty_controller import (
    DuplicateEmailError,
    FacultyValidationError,
)
from central_system.controllers.student_controller import (
    DuplicateRfidError,
    DuplicateStudentNumberError,
    StudentValidationError,
)


def test_student_crud_and_rfid_lookup(engine: Engine) -> None:
    students = StudentController()  # the process database, no arguments
    s = students.create_student("  Maria   Santos ", "2021-00001", "04:a1:b2:c3", "CS")
    assert s.name == "Maria Santos" and s.rfid_uid == "04A1B2C3"
    assert students.get_by_rfid(" 04a1b2c3\n").id == s.id
    assert students.get_by_rfid("ffff") is None and students.get_by_rfid("zz") is None
    with pytest.raises(DuplicateRfidError):
        students.create_student("Other", "2021-00002", "04A1B2C3")
    with pytest.raises(DuplicateStudentNumberError):
        students.create_student("Other", "2021-00001", "DEADBEEF")
    with pytest.raises(StudentValidationError):
        students.create_student("", "2021-00003", "DEADBEEF")
    other = students.create_student("Juan", "2021-00002", "DEADBEEF")
    with pytest.raises(DuplicateRfidError):
        students.update_student(other.id, rfid_uid="04a1b2c3")
    assert students.update_student(other.id, name="Juan Dela Cruz").name == "Juan Dela Cruz"
    assert [x.name for x in StudentController(db=engine).list_students()] == [
        "Juan Dela Cruz",
        "Maria Santos",
    ]
    assert students.delete_student(other.id) is True
    assert students.get_student(other.id) is None


def test_faculty_crud_and_validation(engine: Engine) -> None:
    faculty = FacultyController(db=engine)
    f = faculty.create_faculty("Dr. Cruz", "CS", "Cruz@Example.edu", "aa-bb-cc-dd-ee-ff")
    assert f.email == "cruz@example.edu" and f.ble_id == "AA:BB:CC:DD:EE:FF"
    got = faculty.get_faculty(f.id)
    assert got.status == "offline" and got.desk_online is False
    with pytest.raises(DuplicateEmailError):
        faculty.create_faculty("Dr. Other", email="cruz@example.edu")
    for bad in ({"name": ""}, {"name": "x" * 101}, {"email": "not-an-email"}, {"ble_id": "12"}):
        with pytest.raises(FacultyValidationError):
            faculty.create_faculty(**{"name": "Dr. X", **bad})
    g = faculty.create_faculty("Dr. Gomez", email="gomez@example.edu")
    with pytest.raises(DuplicateEmailError):
        faculty.update_faculty(g.id, email="CRUZ@example.edu")
    assert faculty.update_faculty(g.id, department="Math").department == "Math"
    assert [x.name for x in faculty.list_faculty()] == ["Dr. Cruz", "Dr. Gomez"]
    assert faculty.list_faculty(available_only=True) == []
    assert faculty.delete_faculty(g.id) is True and faculty.get_faculty(g.id) is None
