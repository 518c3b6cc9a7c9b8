"""``consultease kiosk enroll|revoke|list``: the tokens kiosks use to call the server."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``kiosk`` sub-command."""
    p = subparsers.add_parser("kiosk", help="enroll or revoke a kiosk's API token")
    sub = p.add_subparsers(dest="kiosk_command", required=True)
    enroll = sub.add_parser("enroll", help="enroll a kiosk and print its token once")
    enroll.add_argument("name", help="the kiosk's name, such as lobby-1")
    enroll.set_defaults(func=run_enroll)
    revoke = sub.add_parser("revoke", help="revoke a kiosk's token at once")
    revoke.add_argument("name")
    revoke.set_defaults(func=run_revoke)
    lst = sub.add_parser("list", help="list enrolled kiosks")
    lst.set_defaults(func=run_list)


def _actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:
        return "cli"


def run_enroll(args: argparse.Namespace) -> int:
    """Print the new token once; only its hash is stored."""
    from .. import db
    from ..server.auth import EnrollmentError, enroll_kiosk

    db.init_db()
    try:
        with db.session_scope() as session:
            token = enroll_kiosk(session, args.name, _actor())
    except EnrollmentError as err:
        _audit_failure("kiosk.enroll", args.name, str(err))
        print(f"consultease kiosk enroll: {err}", file=sys.stderr)
        return 1
    print(
        f"Kiosk {args.name.strip()!r} enrolled. Its token (shown only now; set it as "
        "CONSULTEASE_SERVER_TOKEN on that kiosk):",
        file=sys.stderr,
    )
    print(token)
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    """Revoke the token: the kiosk's next call is refused."""
    from .. import db
    from ..server.auth import EnrollmentError, revoke_kiosk

    db.init_db()
    try:
        with db.session_scope() as session:
            revoke_kiosk(session, args.name, _actor())
    except EnrollmentError as err:
        _audit_failure("kiosk.revoke", args.name, str(err))
        print(f"consultease kiosk revoke: {err}", file=sys.stderr)
        return 1
    print(f"Kiosk {args.name.strip()!r} revoked.")
    return 0


def _audit_failure(action: str, name: str, reason: str) -> None:
    # The failed attempt's audit row was rolled back with its transaction: write it alone.
    from .. import db
    from ..controllers.base import audit

    with db.session_scope() as session:
        audit(session, _actor(), action, name[:64], success=False, note=reason[:200])


def run_list(args: argparse.Namespace) -> int:
    """Name, enrolled, last used, revoked."""
    from .. import db
    from ..server.auth import list_kiosks

    db.init_db()
    with db.session_scope() as session:
        rows = list_kiosks(session)
        for k in rows:
            state = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
            used = f"{k.last_used_at:%Y-%m-%d %H:%M}" if k.last_used_at else "never"
            print(f"{k.name}\tenrolled {k.created_at:%Y-%m-%d %H:%M}\tlast used {used}\t{state}")
    if not rows:
        print("No kiosk enrolled.")
    return 0
