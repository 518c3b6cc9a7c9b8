"""``consultease doctor``: one PASS/WARN/FAIL line per check; exits 1 when any check fails."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``doctor`` sub-command."""
    p = subparsers.add_parser(
        "doctor",
        help="check settings, broker, database (a kiosk of a server: the servers and its "
        "token), clock and disk",
    )
    p.add_argument("--timeout", type=float, default=5.0, help="broker or server probe timeout (s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; non-zero exit status when a check fails."""
    from ..config import get_settings
    from ..services.doctor import Status, run_checks

    # An invalid setting raises here: `consultease` prints it as one line and exits 2.
    settings = get_settings()
    results = run_checks(settings, probe_timeout=args.timeout)
    for result in results:
        print(result.line())
    failed = sum(r.status == Status.FAIL for r in results)
    warned = sum(r.status == Status.WARN for r in results)
    print(f"{len(results)} checks: {failed} failed, {warned} warnings")
    sys.stdout.flush()
    return 1 if failed else 0
