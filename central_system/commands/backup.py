"""``consultease backup OUT`` and ``consultease restore IN``."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``backup`` and ``restore`` sub-commands."""
    p = subparsers.add_parser("backup", help="back the database up to a file")
    p.add_argument(
        "out",
        help="backup file to write (mode 0600), or a directory (ending in /) for a timestamped file",
    )
    p.set_defaults(func=run_backup)
    r = subparsers.add_parser(
        "restore", help="replace the database's contents with a backup (stop the kiosk first)"
    )
    r.add_argument("src", help="backup file made by `consultease backup`")
    r.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    r.set_defaults(func=run_restore)


def run_backup(args: argparse.Namespace) -> int:
    """Write a backup of the configured database."""
    from ..services.backup import BackupError, backup_database

    out = Path(args.out)
    if args.out.endswith(os.sep) or out.is_dir():
        # A directory: one timestamped file per run (what the systemd timer uses).
        out = out / f"consultease-{datetime.now(UTC):%Y%m%d-%H%M%S}.backup"
    try:
        path = backup_database(out)
    except (BackupError, OSError) as err:
        print(f"backup failed: {err}", file=sys.stderr)
        return 1
    print(f"backup written to {path}")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    """Restore the configured database from a backup."""
    from ..config import get_settings
    from ..services.backup import BackupError, restore_database

    target = get_settings().effective_database_url.split("@")[-1]
    if not args.yes:
        answer = input(f"Replace every row of {target} with {args.src}? Type 'yes': ")
        if answer.strip().lower() != "yes":
            print("restore cancelled")
            return 1
    try:
        restore_database(args.src)
    except (BackupError, OSError) as err:
        print(f"restore failed: {err}", file=sys.stderr)
        return 1
    print(f"database {target} restored from {args.src}")
    return 0
