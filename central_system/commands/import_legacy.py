"""``consultease import-legacy``: adopt an original ConsultEase installation (docs/migration.md)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``import-legacy`` sub-command."""
    p = subparsers.add_parser(
        "import-legacy",
        help="import an original ConsultEase database, or convert its config.json",
        description="Import students, faculty (keeping their ids, so deployed desks keep "
        "working), consultations, administrators and the audit log of an original ConsultEase "
        "database into this ConsultEase's database, in one transaction; a re-run adds only "
        "what is new. Or, with --config and --write-config, convert its config.json. "
        "See docs/migration.md.",
    )
    p.add_argument("--from", dest="source", help="the original's database: SQLite file or URL")
    p.add_argument(
        "--to",
        dest="target",
        default=None,
        help="ConsultEase's database URL (default: the configured database)",
    )
    p.add_argument("--dry-run", action="store_true", help="report only; nothing is written")
    p.add_argument(
        "--timezone",
        default=None,
        help="zone of the original's naive timestamps (default: UTC for a SQLite source, "
        "the server's TimeZone for PostgreSQL)",
    )
    p.add_argument(
        "--pending-max-age-hours",
        type=float,
        default=None,
        help="pending requests older than this are closed (expired) with a note the student "
        "sees (default: consultation_expire_after_s, the queue's own expiry; 8 when that is 0)",
    )
    p.add_argument("--config", type=Path, help="the original's config.json")
    p.add_argument("--write-config", type=Path, help="where to write the TOML settings file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Convert the config and/or import the database."""
    if args.config is None and args.source is None:
        print(
            "Give --from DATABASE, or --config config.json --write-config out.toml.",
            file=sys.stderr,
        )
        return 2
    if args.config is not None:
        code = _convert(args)
        if code or args.source is None:
            return code
    return _import(args)


def _convert(args: argparse.Namespace) -> int:
    from ..services.legacy_config import LegacyConfigError, convert_config

    if args.write_config is None:
        print("--config needs --write-config OUT.toml.", file=sys.stderr)
        return 2
    try:
        text, notes = convert_config(args.config.read_bytes())
    except OSError as err:
        print(f"cannot read {args.config}: {err.strerror or err}", file=sys.stderr)
        return 1
    except LegacyConfigError as err:
        print(f"{args.config}: {err}", file=sys.stderr)
        return 1
    try:
        # The file may hold the broker password: created readable by its owner only.
        fd = os.open(args.write_config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
    except OSError as err:
        print(f"cannot write {args.write_config}: {err.strerror or err}", file=sys.stderr)
        return 1
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"Settings written to {args.write_config}; use CONSULTEASE_CONFIG={args.write_config}")
    return 0


def _import(args: argparse.Namespace) -> int:
    from sqlalchemy.exc import SQLAlchemyError

    from ..config import get_settings
    from ..controllers.legacy_import import ImportOptions, LegacyImportError, import_legacy

    settings = get_settings()
    hours = args.pending_max_age_hours
    if hours is None:
        expire = settings.consultation_expire_after_s
        hours = expire / 3600 if expire > 0 else 8.0
    if hours < 0:
        print("--pending-max-age-hours must not be negative.", file=sys.stderr)
        return 2
    target = args.target or settings.effective_database_url
    options = ImportOptions(
        source_url=args.source,
        dry_run=args.dry_run,
        timezone=args.timezone,
        pending_max_age=timedelta(hours=hours),
        progress=lambda message: print(message, file=sys.stderr, flush=True),
    )
    try:
        report = import_legacy(options, target)
    except LegacyImportError as err:
        print(err, file=sys.stderr)
        return 1
    except SQLAlchemyError as err:
        # The target (ConsultEase's database) is unreachable or refused a write; nothing
        # was committed. The driver's first line says why (no URL, so no password).
        cause = getattr(err, "orig", None) or err  # a DBAPIError carries the driver's error
        reason = str(cause).splitlines()[0]
        print(
            f"import failed, nothing was written: {type(err).__name__}: {reason}", file=sys.stderr
        )
        return 1
    print(report.render(), end="")
    return 0
