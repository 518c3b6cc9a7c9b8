"""``consultease faculty …`` and ``consultease students …``: people without the kiosk.

``add``, ``list`` and ``remove`` go through the faculty and student controllers
(the same validation as the kiosk's admin screens) and write the audit log with
the actor ``cli:<os user>``. ``import`` and ``export`` read and write CSV files
through the controllers' roster code (``central_system.controllers.roster``),
which the web dashboard reuses.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..controllers import FacultyController, StudentController


def register(subparsers: Any) -> None:
    """Add the ``faculty`` and ``students`` sub-command groups."""
    fac = subparsers.add_parser(
        "faculty", help="faculty members: add, list, remove, import, export"
    )
    fsub = fac.add_subparsers(dest="faculty_command", required=True)
    add = fsub.add_parser(
        "add", help="add a faculty member (shown offline until their desk reports)"
    )
    add.add_argument("--name", required=True)
    add.add_argument("--department", default="")
    add.add_argument("--email", default=None)
    add.add_argument("--ble-id", default=None, help="beacon MAC (AA:BB:CC:DD:EE:FF) or UUID")
    add.set_defaults(func=run_faculty_add)
    lst = fsub.add_parser("list", help="every faculty member; the id is the desk unit's faculty id")
    lst.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    lst.set_defaults(func=run_faculty_list)
    rm = fsub.add_parser("remove", help="remove a faculty member (and their consultations)")
    rm.add_argument("faculty_id", type=int)
    rm.add_argument("--yes", action="store_true", help="also when consultations would be deleted")
    rm.set_defaults(func=run_faculty_remove)
    _add_csv_commands(fsub, "faculty")

    stu = subparsers.add_parser("students", help="students: add, list, remove, import, export")
    ssub = stu.add_subparsers(dest="students_command", required=True)
    add = ssub.add_parser("add", help="register a student and their RFID card")
    add.add_argument("--name", required=True)
    add.add_argument("--student-number", required=True, help="the number printed on the card")
    add.add_argument("--card", required=True, help="the card's UID (any case, ':' or '-' allowed)")
    add.add_argument("--department", default="")
    add.set_defaults(func=run_students_add)
    lst = ssub.add_parser("list", help="every student")
    lst.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    lst.set_defaults(func=run_students_list)
    rm = ssub.add_parser("remove", help="remove a student (and their consultations)")
    which = rm.add_mutually_exclusive_group(required=True)
    which.add_argument("student_pk", type=int, nargs="?", help="the id shown by `students list`")
    which.add_argument("--card", help="the student's card UID")
    which.add_argument("--student-number")
    rm.add_argument("--yes", action="store_true", help="also when consultations would be deleted")
    rm.set_defaults(func=run_students_remove)
    _add_csv_commands(ssub, "students")


def _add_csv_commands(sub: Any, kind: str) -> None:
    key = "card UID" if kind == "students" else "email"
    imp = sub.add_parser(
        "import",
        help=f"import a CSV file (preview first; --commit writes it; keyed by {key})",
        description=f"Read FILE (UTF-8, with or without BOM). Without --commit nothing is "
        f"written: every row is checked and every bad row is listed with its line number. "
        f"With --commit the file is written in one transaction, and only when no row is bad. "
        f"Rows whose {key} is already registered update that record (re-running adds nothing).",
    )
    imp.add_argument("file", type=Path)
    imp.add_argument("--commit", action="store_true", help="write the rows (all or nothing)")
    imp.set_defaults(func=run_import, kind=kind)
    exp = sub.add_parser("export", help="write every record as CSV (the import's header)")
    exp.add_argument("-o", "--output", type=Path, default=None, help="file (default: stdout)")
    exp.set_defaults(func=run_export, kind=kind)


def cli_actor() -> str:
    """The audit log's actor for this command: ``cli:<os user>``."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry in a container: still audited, just unnamed
        user = "unknown"
    return f"cli:{user}"[:100]


def _audit(action: str, target: str, details: dict[str, object] | None = None) -> None:
    from ..controllers.admin_controller import AdminController

    AdminController().audit(cli_actor(), action, target, True, details)


def _print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for line in [headers, *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def _print_list(
    as_json: bool, records: list[dict[str, Any]], columns: dict[str, str], noun: str
) -> int:
    """``records`` as one JSON array, or as a table of ``columns`` (key: header) and a count."""
    if as_json:
        print(json.dumps(records, ensure_ascii=False, indent=1))
        return 0
    _print_table(
        list(columns.values()),
        [["" if r[k] is None else str(r[k]) for k in columns] for r in records],
    )
    print(f"{len(records)} {noun}", file=sys.stderr)
    return 0


def _consultation_count(**where: int) -> int:
    from sqlalchemy import func, select

    from ..db import session_scope
    from ..models import Consultation

    stmt = select(func.count(Consultation.id))
    for column, value in where.items():
        stmt = stmt.where(getattr(Consultation, column) == value)
    with session_scope() as s:
        return int(s.scalar(stmt) or 0)


def _refused_without_yes(who: str, consultations: int, yes: bool) -> bool:
    """True (and says why) when removing ``who`` would delete consultations and --yes is absent."""
    if consultations and not yes:
        print(
            f"{who} has {consultations} consultations, which would be deleted too. "
            "Repeat with --yes to remove them.",
            file=sys.stderr,
        )
        return True
    return False


# --------------------------------------------------------------------------- faculty


def run_faculty_add(args: argparse.Namespace) -> int:
    """Add one faculty member and print their id (the desk unit's faculty id)."""
    from ..controllers.faculty_controller import FacultyController, FacultyError

    try:
        f = FacultyController().create_faculty(args.name, args.department, args.email, args.ble_id)
    except FacultyError as err:
        print(err, file=sys.stderr)
        return 1
    _audit("faculty.create", f"faculty:{f.id}", {"name": f.name})
    print(f"Faculty member {f.id} added: {f.name}. Their desk unit's faculty id is {f.id}.")
    return 0


def run_faculty_list(args: argparse.Namespace) -> int:
    """Print every faculty member."""
    from ..controllers.faculty_controller import FacultyController

    rows = FacultyController().list_faculty()
    records = [
        {
            "id": f.id,
            "name": f.name,
            "department": f.department,
            "email": f.email,
            "ble_id": f.ble_id,
            "status": f.status,
            "desk_online": f.desk_online,
        }
        for f in rows
    ]
    columns = {k: k for k in ("id", "name", "department", "email", "status")}
    return _print_list(args.json, records, columns, "faculty members")


def run_faculty_remove(args: argparse.Namespace) -> int:
    """Remove one faculty member; refused without --yes when consultations would go too."""
    from ..controllers.faculty_controller import FacultyController

    controller = FacultyController()
    f = controller.get_faculty(args.faculty_id)
    if f is None:
        print(f"No faculty member with id {args.faculty_id}.", file=sys.stderr)
        return 1
    count = _consultation_count(faculty_id=f.id)
    if _refused_without_yes(f"{f.name} (id {f.id})", count, args.yes):
        return 1
    controller.delete_faculty(f.id)
    _audit("faculty.delete", f"faculty:{f.id}", {"name": f.name, "consultations": count})
    print(f"Faculty member {f.id} ({f.name}) removed, with {count} consultations.")
    return 0


# --------------------------------------------------------------------------- students


def run_students_add(args: argparse.Namespace) -> int:
    """Register one student with their card."""
    from ..controllers.student_controller import StudentController, StudentError

    try:
        s = StudentController().create_student(
            args.name, args.student_number, args.card, args.department
        )
    except StudentError as err:
        print(err, file=sys.stderr)
        return 1
    _audit("student.create", f"student:{s.id}", {"student_id": s.student_id})
    print(f"Student {s.id} added: {s.name} ({s.student_id}), card {s.rfid_uid}.")
    return 0


def run_students_list(args: argparse.Namespace) -> int:
    """Print every student."""
    from ..controllers.student_controller import StudentController

    rows = StudentController().list_students()
    records = [
        {
            "id": s.id,
            "name": s.name,
            "student_number": s.student_id,
            "department": s.department,
            "card_uid": s.rfid_uid,
        }
        for s in rows
    ]
    columns = {
        "id": "id",
        "name": "name",
        "student_number": "student number",
        "department": "department",
        "card_uid": "card",
    }
    return _print_list(args.json, records, columns, "students")


def run_students_remove(args: argparse.Namespace) -> int:
    """Remove one student, found by id, card or student number."""
    from ..controllers.student_controller import StudentController

    controller = StudentController()
    if args.card is not None:
        s = controller.get_by_rfid(args.card)
        label = f"card {args.card}"
    elif args.student_number is not None:
        s = controller.get_by_student_number(args.student_number)
        label = f"student number {args.student_number}"
    else:
        s = controller.get_student(args.student_pk)
        label = f"id {args.student_pk}"
    if s is None:
        print(f"No student with {label}.", file=sys.stderr)
        return 1
    count = _consultation_count(student_id=s.id)
    if _refused_without_yes(f"{s.name} ({s.student_id})", count, args.yes):
        return 1
    controller.delete_student(s.id)
    _audit(
        "student.delete", f"student:{s.id}", {"student_id": s.student_id, "consultations": count}
    )
    print(f"Student {s.id} ({s.name}, {s.student_id}) removed, with {count} consultations.")
    return 0


# --------------------------------------------------------------------------- CSV


def _controller(kind: str) -> StudentController | FacultyController:
    """The controller whose ``import_csv``/``export_csv`` serve ``kind`` (the process's database)."""
    from ..controllers import FacultyController, StudentController

    return StudentController() if kind == "students" else FacultyController()


def run_import(args: argparse.Namespace) -> int:
    """Preview (default) or commit a CSV import."""
    from ..controllers import roster

    try:
        with args.file.open("rb") as fh:
            data = fh.read(roster.MAX_FILE_BYTES + 1)  # a larger file is refused as such
    except OSError as err:
        print(f"cannot read {args.file}: {err.strerror or err}", file=sys.stderr)
        return 1
    try:
        report = _controller(args.kind).import_csv(data, commit=args.commit, actor=cli_actor())
    except roster.RosterError as err:
        print(err, file=sys.stderr)
        return 1
    print(report.render(), end="")
    if report.bad_rows:
        return 1
    if not args.commit:
        print("Nothing was written. Repeat with --commit to write these rows.")
    return 0


def run_export(args: argparse.Namespace) -> int:
    """Write the CSV export to a file or stdout."""
    text = _controller(args.kind).export_csv()
    if args.output is None:
        sys.stdout.write(text)
        return 0
    try:
        args.output.write_text(text, encoding="utf-8", newline="")
    except OSError as err:
        print(f"cannot write {args.output}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(f"{text.count(chr(10)) - 1} rows written to {args.output}", file=sys.stderr)
    return 0
