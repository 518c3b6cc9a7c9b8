"""The demo's backend: the kiosk's :class:`KioskBackend` plus seeding the demo data.

It runs wherever the kiosk's backend runs (the kiosk's process, or the backend's
child process that ``consultease run`` and ``consultease demo`` use), so the demo
seeds its faculty, students and first administrator through the same system that
serves the kiosk. No Qt here: the child process never loads it.
"""

from __future__ import annotations

from typing import Any

from ..controllers.kiosk_facade import KioskBackend


class DemoBackend(KioskBackend):
    """``KioskBackend`` with :meth:`demo_seed`."""

    def demo_seed(
        self,
        faculty: list[tuple[str, str, str, bool]],
        students: list[tuple[str, str, str, str]],
        admin_username: str,
    ) -> dict[str, Any]:
        """Create the demo's faculty, students and (if none exists) first administrator.

        Returns their ids by name and the administrator's random password (None when an
        administrator already existed). There is no default password: it is generated here
        and shown once by the demo.
        """
        faculty_ctl = self._controller("faculty")
        student_ctl = self._controller("student")
        faculty_ids = {
            name: faculty_ctl.create_faculty(name=name, department=dept, email=email).id
            for name, dept, email, _present in faculty
        }
        student_ids = {
            name: student_ctl.create_student(
                name=name, student_id=number, department=dept, rfid_uid=uid
            ).id
            for name, number, dept, uid in students
        }
        password = None
        admin_ctl = self._controller("admin")
        if admin_ctl.needs_first_admin():
            password = admin_ctl.generate_password()
            admin_ctl.create_first_admin(admin_username, password)
        return {"faculty": faculty_ids, "students": student_ids, "admin_password": password}
