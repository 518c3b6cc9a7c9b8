"""``consultease admin create-first`` and ``consultease admin reset-password USER``."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from typing import Any

MAX_PROMPTS = 3


def register(subparsers: Any) -> None:
    """Add the ``admin`` sub-command group."""
    p = subparsers.add_parser("admin", help="administrator accounts")
    sub = p.add_subparsers(dest="admin_command", required=True)
    first = sub.add_parser(
        "create-first", help="create the first administrator (refused once one exists)"
    )
    first.add_argument("--username", help="username (asked when omitted)")
    first.set_defaults(func=run_create_first)
    reset = sub.add_parser(
        "reset-password",
        help="set a temporary password that must be changed at the next login",
    )
    reset.add_argument("username")
    reset.set_defaults(func=run_reset_password)


def _ask_new_password(username: str, prompt: Callable[[str], str] | None = None) -> str | None:
    """Ask twice (hidden), check the policy; up to ``MAX_PROMPTS`` tries."""
    from ..controllers.admin_controller import PasswordPolicyError, check_password_policy

    prompt = prompt or getpass.getpass  # looked up at call time so tests can replace it

    for _ in range(MAX_PROMPTS):
        password = prompt("New password: ")
        try:
            check_password_policy(password, username)
        except PasswordPolicyError as err:
            print(err, file=sys.stderr)
            continue
        if prompt("Repeat the password: ") != password:
            print("The two passwords differ.", file=sys.stderr)
            continue
        return password
    return None


def run_create_first(args: argparse.Namespace) -> int:
    """Interactively create the first administrator."""
    from ..controllers.admin_controller import AdminController, AdminError

    controller = AdminController()
    if not controller.needs_first_admin():
        print(
            "An administrator already exists. Use `consultease admin reset-password USER` "
            "if a password is lost.",
            file=sys.stderr,
        )
        return 1
    username = args.username or input("Administrator username: ").strip()
    password = _ask_new_password(username)
    if password is None:
        return 1
    try:
        controller.create_first_admin(username, password)
    except AdminError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"Administrator {username!r} created.")
    return 0


def run_reset_password(args: argparse.Namespace) -> int:
    """Set a temporary password for USER; they must change it at the next login."""
    from ..controllers.admin_controller import AdminController, AdminError

    controller = AdminController()
    if controller.get_admin(args.username) is None:
        print(f"No administrator named {args.username!r}.", file=sys.stderr)
        return 1
    print(f"Choose a temporary password for {args.username!r} (they must change it at login).")
    password = _ask_new_password(args.username)
    if password is None:
        return 1
    try:
        controller.reset_password(args.username, password, actor="cli")
    except AdminError as err:
        print(err, file=sys.stderr)
        return 1
    print(f"Password of {args.username!r} reset; it must be changed at the next login.")
    return 0
