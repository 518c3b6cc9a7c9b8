"""``consultease faculty|students add|list|remove|import|export`` on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from central_system import db as dbmod
from central_system.cli import main as cli_main
from central_system.config import reset_settings_cache
from central_system.controllers import FacultyController, StudentController
from central_system.controllers.roster import RosterError
from central_system.models import AuditLog, Consultation, Faculty, Student

HEADER = "student_number,name,department,card_uid\n"


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The process database on ``db_url``, as the CLI sees it through the environment."""
    monkeypatch.setenv("CONSULTEASE_DATABASE_URL", db_url)
    reset_settings_cache()
    dbmod.init_db(db_url)
    yield db_url
    dbmod.dispose_db()


def _count(model: type) -> int:
    with dbmod.session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _audit_actions() -> list[tuple[str, str]]:
    with dbmod.session_scope() as s:
        return [(a.actor, a.action) for a in s.scalars(select(AuditLog).order_by(AuditLog.id))]


def test_faculty_add_list_remove_validate_and_audit(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli_main(["faculty", "add", "--name", "Dr. José Rizal", "--email", "JR@Uni.edu"]) == 0
    assert "desk unit's faculty id is" in capsys.readouterr().out
    assert cli_main(["faculty", "add", "--name", "Dr. Two", "--email", "jr@uni.edu"]) == 1
    assert "already used" in capsys.readouterr().err
    assert cli_main(["faculty", "add", "--name", " ", "--email", "x@uni.edu"]) == 1
    assert "must not be empty" in capsys.readouterr().err
    assert cli_main(["faculty", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(f["name"], f["email"], f["status"]) for f in listed] == [
        ("Dr. José Rizal", "jr@uni.edu", "offline")
    ]
    fid = listed[0]["id"]
    with dbmod.session_scope() as s:
        s.add(Student(name="Ana", student_id="S-1", rfid_uid="0A0B0C0D"))
        s.flush()
        sid = s.scalar(select(Student.id))
        s.add(Consultation(student_id=sid, faculty_id=fid, message="hi"))
    assert cli_main(["faculty", "remove", str(fid)]) == 1
    assert "--yes" in capsys.readouterr().err
    assert _count(Faculty) == 1
    assert cli_main(["faculty", "remove", str(fid), "--yes"]) == 0
    assert _count(Faculty) == 0 and _count(Consultation) == 0
    assert cli_main(["faculty", "remove", str(fid)]) == 1
    actions = _audit_actions()
    assert [a for _, a in actions] == ["faculty.create", "faculty.delete"]
    assert all(actor.startswith("cli:") for actor, _ in actions)


def test_students_add_list_remove_by_card_and_number(
    cli_db: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["students", "add", "--name", "Ana Ñ", "--student-number", "2021-001"]
    assert cli_main([*args, "--card", "04:a1:b2:c3"]) == 0
    assert cli_main([*args, "--card", "0A0B0C0D"]) == 1  # number already used
    assert "already registered" in capsys.readouterr().err
    assert (
        cli_main(["students", "add", "--name", "B", "--student-number", "9", "--card", "zz"]) == 1
    )
    assert "hexadecimal" in capsys.readouterr().err
    assert cli_main(["students", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["card_uid"]) for s in listed] == [("Ana Ñ", "04A1B2C3")]
    assert cli_main(["students", "remove", "--card", "04a1b2c3"]) == 0
    assert _count(Student) == 0
    assert cli_main(["students", "remove", "--student-number", "2021-001"]) == 1
    assert [a for _, a in _audit_actions()] == ["student.create", "student.delete"]


def _big_roster(count: int) -> tuple[bytes, dict[int, str]]:
    """``count`` students as CSV bytes with a few bad rows; returns the bytes and {line: reason}."""
    lines = [HEADER.encode()]
    bad: dict[int, str] = {}
    for i in range(count):
        line_no = i + 2
        name, uid = f"Étudiant {i} Nguyễn", f"{0x10000000 + i:08X}"
        if i == 1200:
            uid = f"{0x10000000 + 7:08x}"  # the card of row 7, in lower case
            bad[line_no] = "card UID 10000007 is also on line 9"
        elif i == 2500:
            name = ""
            bad[line_no] = "The name must not be empty."
        elif i == 3100:
            name = "N" * 101
            bad[line_no] = "The name must be at most 100 characters."
        if i == 4000:
            row = f"S{i},Caf\xe9 {i},Maths,{uid}\n".encode("latin-1")  # not UTF-8
            bad[line_no] = "not UTF-8 text; save the file as UTF-8 (CSV UTF-8)"
        else:
            row = f"S{i},{name},Maths,{uid}\n".encode()
        lines.append(row)
    return b"".join(lines), bad


def test_csv_5000_students_preview_lists_exactly_the_bad_rows_and_writes_nothing(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, bad = _big_roster(5000)
    path = tmp_path / "roster.csv"
    path.write_bytes(b"\xef\xbb\xbf" + data)
    assert cli_main(["students", "import", str(path)]) == 1
    out = capsys.readouterr().out
    listed = {
        int(line.split(":", 1)[0].removeprefix("line ")): line.split(": ", 1)[1]
        for line in out.splitlines()
        if line.startswith("line ")
    }
    assert listed == bad
    assert "5000 rows read: 4996 new students" in out
    assert _count(Student) == 0
    # --commit with bad rows: still all or nothing.
    assert cli_main(["students", "import", str(path), "--commit"]) == 1
    assert _count(Student) == 0 and _audit_actions() == []
    # The corrected file (bad lines removed): preview writes nothing, commit writes all.
    good = b"".join(
        line for n, line in enumerate(data.splitlines(keepends=True), start=1) if n not in bad
    )
    path.write_bytes(good)  # this time without a BOM
    assert cli_main(["students", "import", str(path)]) == 0
    assert "Nothing was written" in capsys.readouterr().out
    assert _count(Student) == 0
    assert cli_main(["students", "import", str(path), "--commit"]) == 0
    assert "Written: 4996 added, 0 updated" in capsys.readouterr().out
    assert _count(Student) == 4996
    assert StudentController().get_by_rfid("10000007") is not None
    # Idempotent: the same file again adds nothing; a changed name is an update.
    report = StudentController().import_csv(good, commit=True, actor="test")
    assert (report.new, report.updated, report.unchanged) == (0, 0, 4996)
    changed = good.replace("Étudiant 12 Nguyễn".encode(), "Étudiante 12 Nguyễn".encode())
    report = StudentController().import_csv(changed, commit=True, actor="test")
    assert (report.new, report.updated, report.unchanged) == (0, 1, 4995)
    assert _count(Student) == 4996
    assert [a for _, a in _audit_actions()] == ["student.import"] * 3


def test_csv_student_number_held_by_another_card_is_a_bad_row(cli_db: str) -> None:
    StudentController().create_student("Ana", "S-1", "0A0B0C0D")
    data = (HEADER + "S-1,Ana Other,,0A0B0C0E\nS-2,Ben,,0a:0b:0c:0d\n").encode()
    report = StudentController().import_csv(data, commit=True, actor="test")
    assert [(b.line, b.reason) for b in report.bad_rows] == [
        (2, "student number S-1 is already registered to another card (0A0B0C0D)")
    ]
    assert not report.committed
    # Keyed by card: the second row would rename student S-1's card holder to number S-2.
    assert report.updated == 1
    assert StudentController().get_by_rfid("0A0B0C0D").student_id == "S-1"  # type: ignore[union-attr]


def test_csv_header_errors_are_one_clear_message(cli_db: str) -> None:
    ctl = StudentController()
    with pytest.raises(RosterError, match="missing column"):
        ctl.import_csv(b"name,department\nAna,CS\n")
    with pytest.raises(RosterError, match="unknown column"):
        ctl.import_csv(b"student_number,name,card_uid,shoe_size\n")
    with pytest.raises(RosterError, match="empty"):
        ctl.import_csv(b"")
    # Aliases used by the original ConsultEase and registrar exports are accepted.
    report = ctl.import_csv(b"Student_ID , Name, RFID_UID\nS-9,Ana,0a0b0c0d\n")
    assert report.ok and report.new == 1


def test_faculty_csv_export_then_import_round_trips_and_is_idempotent(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ctl = FacultyController()
    ctl.create_faculty("Dr. Zoë Ødegård", "Physics", "zoe@uni.edu", "aa:bb:cc:dd:ee:ff")
    ctl.create_faculty("=HYPERLINK(1)", "", "formula@uni.edu")
    out = tmp_path / "faculty.csv"
    assert cli_main(["faculty", "export", "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "id,name,email,department,ble_id"
    assert "'=HYPERLINK(1)" in text  # a spreadsheet shows it, does not run it
    assert "Dr. Zoë Ødegård,zoe@uni.edu,Physics,AA:BB:CC:DD:EE:FF" in text
    capsys.readouterr()
    assert cli_main(["faculty", "import", str(out), "--commit"]) == 0
    assert "0 new faculty members, 0 updated, 2 unchanged, 0 bad" in capsys.readouterr().out
    names = sorted(f.name for f in ctl.list_faculty())
    assert names == ["=HYPERLINK(1)", "Dr. Zoë Ødegård"]
    added = out.read_bytes() + b"new,Dr. New,NEW@uni.edu,,\n"
    report = ctl.import_csv(added, commit=True, actor="test")
    assert (report.new, report.unchanged) == (1, 2)
    assert len(report.created_ids) == 1
    assert ctl.get_faculty(report.created_ids[0]).email == "new@uni.edu"  # type: ignore[union-attr]
    missing = b"name,email\nDr. No Mail,\n"
    report = ctl.import_csv(missing, commit=True, actor="test")
    assert [b.line for b in report.bad_rows] == [2] and "required" in report.bad_rows[0].reason


def test_a_name_starting_with_minus_is_exported_as_text_and_round_trips(
    cli_db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # OWASP's CSV injection list: a spreadsheet runs a cell starting with - as a formula too.
    payload = "-2+3+cmd|' /C calc'!A0"
    FacultyController().create_faculty(payload, "", "minus@uni.edu")
    out = tmp_path / "faculty.csv"
    assert cli_main(["faculty", "export", "-o", str(out)]) == 0
    assert f"'{payload}" in out.read_text(encoding="utf-8")
    capsys.readouterr()
    assert cli_main(["faculty", "import", str(out), "--commit"]) == 0
    assert "0 new faculty members, 0 updated, 1 unchanged, 0 bad" in capsys.readouterr().out
    assert [f.name for f in FacultyController().list_faculty()] == [payload]


def test_an_endless_file_is_refused_after_the_size_limit_not_read_whole(tmp_path: Path) -> None:
    """/dev/zero as the CSV: the import reads no more than its 50 MiB limit, then says so."""
    import os
    import resource
    import subprocess
    import sys

    def limit_memory() -> None:  # before the fix: a MemoryError here, not the machine's RAM
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))

    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTEASE_")}
    env["CONSULTEASE_DATA_DIR"] = str(tmp_path / "data")
    result = subprocess.run(
        [sys.executable, "-m", "central_system.cli", "students", "import", "/dev/zero"],
        cwd=Path(__file__).resolve().parents[2],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_memory,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "larger than 50 MiB" in result.stderr
