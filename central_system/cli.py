"""The ``consultease`` command.

Each sub-command lives in a module listed in ``COMMAND_MODULES`` that exposes
``register(subparsers)``; the parser is assembled from them.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

COMMAND_MODULES: list[str] = [
    "central_system.commands.serve",
    "central_system.commands.admin",
    "central_system.commands.desk_credentials",
    "central_system.commands.broker_config",
    "central_system.commands.backup",
    "central_system.commands.doctor",
    "central_system.commands.kiosk",
    "central_system.commands.desk_units",
    "central_system.commands.people",
    "central_system.commands.import_legacy",
    "central_system.commands.server",  # issue 9: the API server
    "central_system.commands.kiosk_enrollment",  # issue 9: kiosk tokens
]


def setup_logging(level: str = "INFO") -> None:
    """Log to stderr with timestamps (one JSON object a line with CONSULTEASE_LOG_FORMAT=json)."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    if os.environ.get("CONSULTEASE_LOG_FORMAT", "").strip().lower() == "json":  # issue 12
        from .utils.logjson import JsonFormatter

        for handler in logging.getLogger().handlers:
            handler.setFormatter(JsonFormatter())
    for noisy in ("transitions", "amqtt", "alembic.runtime.plugins"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(
        prog="consultease", description="ConsultEase consultation system"
    )
    parser.add_argument("--log-level", default=os.environ.get("CONSULTEASE_LOG_LEVEL", "INFO"))
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as err:  # a command whose optional dependency is missing
            logging.getLogger(__name__).debug("command module %s unavailable: %s", name, err)
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``consultease`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, OperationalError

    from .config import (
        ConfigurationError,
        describe_settings_error,
        is_settings_error,
        retired_settings_in_use,
    )

    # A setting an upgrade retired is not an error (the kiosk must still start): one line.
    for line in retired_settings_in_use():
        print(f"consultease: warning: {line}", file=sys.stderr, flush=True)
    # One place for every command: a bad setting is one line and exit status 2, not a
    # traceback (the settings are read lazily, inside the command).
    try:
        result: int = args.func(args)
    except ValidationError as err:
        if not is_settings_error(err):
            raise
        return _usage_error(describe_settings_error(err))
    except ConfigurationError as err:
        return _usage_error(str(err))
    except (OperationalError, ArgumentError) as err:
        # The configured database is unreachable or its URL unusable: say which and why.
        return _usage_error(
            f"the database {_shown_database_url()} cannot be used: {_first_line(err)}"
        )
    return result


def _shown_database_url() -> str:
    """The configured database URL without its password."""
    from sqlalchemy.engine import make_url

    from .config import get_settings

    try:
        return make_url(get_settings().effective_database_url).render_as_string(hide_password=True)
    except Exception:  # the URL itself may be what is wrong
        return "(CONSULTEASE_DATABASE_URL)"


def _first_line(err: Exception) -> str:
    """The driver's own reason (SQLAlchemy wraps it and adds a link), on one line."""
    reason = str(getattr(err, "orig", None) or err)
    return " ".join(reason.split("(Background on this error")[0].split())


def _usage_error(message: str) -> int:
    print(f"consultease: configuration error: {message}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
