"""CSV import and export of students and faculty: one implementation, two front ends.

The ``consultease students|faculty import|export`` commands and the web
dashboard both call the controllers' ``import_csv``/``export_csv``, which
delegate here, passing their own row checks (this module imports no controller).

Import, in two steps:

1. **Preview** (``commit=False``): the whole file is read and every row checked
   with the controllers' own validators; the report lists every bad row with its
   line number and reason, and how many rows would be new, updated or unchanged.
   Nothing is written.
2. **Commit** (``commit=True``): the same checks, then every row is written in
   one transaction, and only when no row is bad (all or nothing).

Rows are keyed by the card UID (students) or the email address (faculty): a row
whose key is already registered updates that record, so importing the same file
twice adds nothing the second time. Files are UTF-8, with or without a BOM; a
line that is not UTF-8 is a bad row (with its line number), not a crash.

The headers (first line; case and surrounding spaces do not matter; columns in
any order):

- students: ``student_number,name,department,card_uid`` (``department`` optional)
- faculty: ``name,email,department,ble_id`` (``department`` and ``ble_id``
  optional; an ``id`` column, as the export writes it, is accepted and ignored:
  ids are given by the database, and the desk unit is then configured with it)
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Final, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import Faculty, FacultyStatus, Student, utcnow
from .base import audit

logger = logging.getLogger(__name__)

Kind = Literal["students", "faculty"]

STUDENT_COLUMNS: Final = ("student_number", "name", "department", "card_uid")
STUDENT_REQUIRED: Final = frozenset({"student_number", "name", "card_uid"})
FACULTY_COLUMNS: Final = ("name", "email", "department", "ble_id")
FACULTY_EXPORT_COLUMNS: Final = ("id", *FACULTY_COLUMNS)
FACULTY_REQUIRED: Final = frozenset({"name", "email"})
# Spellings of the same column seen in registrar exports and in the original ConsultEase.
ALIASES: Final = {
    "student_id": "student_number",
    "number": "student_number",
    "rfid_uid": "card_uid",
    "rfid": "card_uid",
    "card": "card_uid",
    "uid": "card_uid",
    "e-mail": "email",
}
# OWASP CSV injection: a cell starting with one of these runs as a formula (tab and CR cannot
# start a value here: names and departments are whitespace-trimmed).
_FORMULA_STARTS: Final = ("=", "+", "-", "@")
MAX_FILE_BYTES: Final = 50 * 1024 * 1024
MAX_ROWS: Final = 200_000
MAX_FIELD_CHARS: Final = 1000  # anything longer is refused before validation looks at it

SessionScope = Callable[[], AbstractContextManager[Session]]
# A controller's check of the rows: (session, rows, report) -> [(existing record or None, clean values)]
RowCheck = Callable[
    [Session, "list[Row]", "ImportReport"],
    Sequence[tuple["Student | Faculty | None", dict[str, object]]],
]


class RosterError(ValueError):
    """The file cannot be imported at all (no header, unknown columns, too large); showable."""


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that cannot be imported: its first line in the file and why."""

    line: int
    reason: str


@dataclass(slots=True)
class ImportReport:
    """What an import found (preview) or did (commit)."""

    kind: Kind
    rows: int = 0
    new: int = 0
    updated: int = 0
    unchanged: int = 0
    bad_rows: list[BadRow] = field(default_factory=list)
    committed: bool = False
    created_ids: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no row is bad (a commit writes the file)."""
        return not self.bad_rows

    def render(self) -> str:
        """The report as text, one bad row per line."""
        noun = "students" if self.kind == "students" else "faculty members"
        lines = [
            f"{self.rows} rows read: {self.new} new {noun}, {self.updated} updated, "
            f"{self.unchanged} unchanged, {len(self.bad_rows)} bad."
        ]
        if self.committed:
            lines.append(f"Written: {self.new} added, {self.updated} updated.")
        for bad in self.bad_rows:
            lines.append(f"line {bad.line}: {bad.reason}")
        if self.bad_rows:
            lines.append("Nothing was written: correct the bad rows and import the file again.")
        return "\n".join(lines) + "\n"


@dataclass(slots=True)
class Row:
    line: int
    values: dict[str, str]


# --------------------------------------------------------------------------- reading


def _decode(data: bytes) -> str:
    if len(data) > MAX_FILE_BYTES:
        raise RosterError(f"The file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB.")
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    # surrogateescape keeps the bytes of a line that is not UTF-8, so that row, and only
    # that row, is reported with its line number.
    return data.decode("utf-8", errors="surrogateescape")


def _has_bad_bytes(value: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in value)


def _read_rows(
    data: bytes, columns: tuple[str, ...], required: frozenset[str], ignored: frozenset[str]
) -> tuple[list[Row], list[BadRow]]:
    text = _decode(data)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
    except StopIteration as err:
        raise RosterError("The file is empty; the first line must be the header.") from err
    except csv.Error as err:
        raise RosterError(f"line 1: the header cannot be read as CSV ({err}).") from err
    names = [ALIASES.get(h.strip().lower(), h.strip().lower()) for h in header]
    if any(_has_bad_bytes(n) for n in names):
        raise RosterError("line 1: the header is not UTF-8; save the file as UTF-8 (CSV UTF-8).")
    unknown = [n for n in names if n not in columns and n not in ignored]
    if unknown:
        raise RosterError(
            f"line 1: unknown column(s) {', '.join(repr(u) for u in unknown)}; "
            f"the header is {','.join(columns)}."
        )
    missing = sorted(required - set(names))
    if missing:
        raise RosterError(
            f"line 1: missing column(s) {', '.join(missing)}; the header is {','.join(columns)}."
        )
    if len(set(names)) != len(names):
        raise RosterError("line 1: a column appears twice in the header.")
    rows: list[Row] = []
    bad: list[BadRow] = []
    line = reader.line_num + 1
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            bad.append(BadRow(line, f"not valid CSV ({err})"))
            line = reader.line_num + 1
            continue
        start, line = line, reader.line_num + 1
        if len(rows) + len(bad) >= MAX_ROWS:
            raise RosterError(f"The file has more than {MAX_ROWS} rows; split it.")
        if not fields or all(not f.strip() for f in fields):
            continue  # blank line
        if any(_has_bad_bytes(f) for f in fields):
            bad.append(BadRow(start, "not UTF-8 text; save the file as UTF-8 (CSV UTF-8)"))
            continue
        if len(fields) != len(names):
            bad.append(BadRow(start, f"{len(fields)} fields, the header has {len(names)}"))
            continue
        long = [n for n, f in zip(names, fields, strict=True) if len(f) > MAX_FIELD_CHARS]
        if long:
            bad.append(BadRow(start, f"{long[0]}: more than {MAX_FIELD_CHARS} characters"))
            continue
        values = {n: _unescape(f) for n, f in zip(names, fields, strict=True) if n in columns}
        rows.append(Row(start, values))
    return rows, bad


def _unescape(cell: str) -> str:
    """Undo the export's formula guard (``'=…`` back to ``=…``)."""
    return cell[1:] if cell[:1] == "'" and cell[1:2] in _FORMULA_STARTS else cell


def _counts_as_change(
    target: object | None, clean: dict[str, object], report: ImportReport
) -> bool:
    """True when the row adds or changes a record; counted in ``report`` as new, updated or unchanged."""
    if target is None:
        report.new += 1
        return True
    if any(getattr(target, k) != val for k, val in clean.items()):
        report.updated += 1
        return True
    report.unchanged += 1
    return False


# --------------------------------------------------------------------------- entry points


def import_rows(
    scope: SessionScope, kind: Kind, data: bytes, check: RowCheck, *, commit: bool, actor: str
) -> ImportReport:
    """Check ``data`` (CSV bytes) and, when ``commit`` and no row is bad, write it in one transaction.

    ``check`` is the controller's own validation of the rows (``StudentController`` and
    ``FacultyController`` pass theirs): it appends bad rows to the report and returns each good
    row's existing record (None for a new one) with its clean values.
    """
    if kind not in ("students", "faculty"):
        raise RosterError(f"unknown kind {kind!r}")
    report = ImportReport(kind)
    if kind == "students":
        columns, required = STUDENT_COLUMNS, STUDENT_REQUIRED
    else:
        columns, required = FACULTY_COLUMNS, FACULTY_REQUIRED
    rows, report.bad_rows = _read_rows(data, columns, required, frozenset({"id"}))
    report.rows = len(rows) + len(report.bad_rows)
    with scope() as session:
        checked = check(session, rows, report)
        plan = [(t, clean) for t, clean in checked if _counts_as_change(t, clean, report)]
        report.bad_rows.sort(key=lambda b: b.line)
        if not commit or report.bad_rows:
            session.rollback()
            return report
        created: list[Student | Faculty] = []
        for target, clean in plan:
            if target is None:
                created.append(_new_record(kind, clean))
            else:
                for key, value in clean.items():
                    setattr(target, key, value)
        session.add_all(created)
        session.flush()
        report.created_ids = [c.id for c in created]
        audit(
            session,
            actor,
            f"{'student' if kind == 'students' else 'faculty'}.import",
            f"{report.rows} rows",
            success=True,
            details={"new": report.new, "updated": report.updated, "unchanged": report.unchanged},
        )
        report.committed = True
    logger.info(
        "%s import committed by %s: %d new, %d updated, %d unchanged",
        kind,
        actor,
        report.new,
        report.updated,
        report.unchanged,
    )
    return report


def _new_record(kind: Kind, clean: dict[str, object]) -> Student | Faculty:
    if kind == "students":
        return Student(**clean, created_at=utcnow())
    return Faculty(
        **clean, status=FacultyStatus.OFFLINE.value, desk_online=False, created_at=utcnow()
    )


def export_rows(scope: SessionScope, kind: Kind) -> str:
    """Every student or faculty member as CSV text with the import's header."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    with scope() as session:
        if kind == "students":
            writer.writerow(STUDENT_COLUMNS)
            for s in session.scalars(select(Student).order_by(Student.student_id)):
                writer.writerow(_safe([s.student_id, s.name, s.department, s.rfid_uid]))
        else:
            writer.writerow(FACULTY_EXPORT_COLUMNS)
            for f in session.scalars(select(Faculty).order_by(Faculty.id)):
                writer.writerow(
                    _safe([str(f.id), f.name, f.email or "", f.department, f.ble_id or ""])
                )
    return out.getvalue()


def spreadsheet_safe(cell: str) -> str:
    """A cell a spreadsheet would run as a formula gets a leading apostrophe (CSV injection)."""
    return "'" + cell if cell[:1] in _FORMULA_STARTS else cell


def _safe(cells: list[str]) -> list[str]:
    return [spreadsheet_safe(c) for c in cells]
