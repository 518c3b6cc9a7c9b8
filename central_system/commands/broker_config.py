"""``consultease broker-config --out DIR``: Mosquitto configuration, password file and ACL."""

from __future__ import annotations

import argparse
import grp
import os
import sys
from pathlib import Path
from typing import Any


def _default_group() -> str | None:
    try:
        grp.getgrnam("mosquitto")
    except KeyError:
        return None
    return "mosquitto"


def register(subparsers: Any) -> None:
    """Add the ``broker-config`` sub-command."""
    p = subparsers.add_parser(
        "broker-config",
        help="write mosquitto.conf, the password file, the ACL and the central credentials",
    )
    p.add_argument("--out", type=Path, required=True, help="directory to write into")
    p.add_argument(
        "--install-dir",
        type=Path,
        default=None,
        help="where the broker will read the files (default: --out)",
    )
    p.add_argument("--port", type=int, default=1883, help="plain MQTT listener port")
    p.add_argument(
        "--listen-address",
        default=None,
        help="bind address of the plain listener (default: every interface); the central "
        "system's central.env connects here",
    )
    p.add_argument(
        "--tls-listen-address",
        default=None,
        help="bind address of the TLS listener (default: every interface)",
    )
    p.add_argument("--tls-cert", type=Path, help="server certificate for a TLS listener")
    p.add_argument("--tls-key", type=Path, help="server private key for the TLS listener")
    p.add_argument("--ca", type=Path, help="CA certificate for the TLS listener")
    p.add_argument("--tls-port", type=int, default=8883)
    p.add_argument(
        "--group",
        default=_default_group(),
        help="group that owns the password file and ACL so the broker can read them "
        "(default: mosquitto when that group exists)",
    )
    p.add_argument(
        "--rotate-central",
        action="store_true",
        help="generate new central-system credentials (restart the kiosk afterwards)",
    )
    legacy = p.add_mutually_exclusive_group()
    legacy.add_argument(
        "--legacy-desk-login",
        metavar="USER|anonymous",
        help="transition mode for desks still flashed for the original ConsultEase: let their "
        "shared broker login (password asked, or CONSULTEASE_LEGACY_DESK_PASSWORD), or no login "
        "at all ('anonymous'), act as any desk until each desk has its own credentials; "
        "`doctor` warns while it is on (docs/migration.md)",
    )
    legacy.add_argument(
        "--end-legacy-desk-login", action="store_true", help="turn the transition mode off"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Generate the broker configuration from the database."""
    from ..config import get_settings
    from ..db import session_scope
    from ..services import provisioning

    get_settings()  # a bad setting is reported by `consultease` itself (one line, exit 2)
    tls_parts = (args.tls_cert, args.tls_key, args.ca)
    if any(tls_parts) and not all(tls_parts):
        print("--tls-cert, --tls-key and --ca go together.", file=sys.stderr)
        return 2
    if args.tls_listen_address and not all(tls_parts):
        print("--tls-listen-address needs --tls-cert, --tls-key and --ca.", file=sys.stderr)
        return 2
    tls = (
        provisioning.TLSOptions(
            args.tls_cert.absolute(),
            args.tls_key.absolute(),
            args.ca.absolute(),
            args.tls_port,
            args.tls_listen_address,
        )
        if all(tls_parts)
        else None
    )
    try:
        with session_scope() as s:
            if args.legacy_desk_login or args.end_legacy_desk_login:
                _set_transition(s, args)
            result = provisioning.write_broker_config(
                s,
                args.out,
                install_dir=args.install_dir,
                port=args.port,
                listen_address=args.listen_address,
                tls=tls,
                rotate_central=args.rotate_central,
                group=args.group or None,
            )
    except (ValueError, OSError) as err:
        print(f"broker-config failed: {err}", file=sys.stderr)
        return 1
    print(f"Wrote {result.conf_path}, {result.password_path}, {result.acl_path}")
    print(
        f"Central system credentials ({'new' if result.central_created else 'kept'}) in "
        f"{result.central_env_path} (mode 0600); point the kiosk's systemd unit at it with "
        "EnvironmentFile=. The password is not printed."
    )
    print(f"{result.desk_count} desk units in the password file and ACL.")
    if args.legacy_desk_login:
        print(
            "TRANSITION MODE is on: desks with the old login may act as any desk. Give each "
            "desk its own credentials (consultease desk provision) when it is next flashed, "
            "then run broker-config with --end-legacy-desk-login.",
            file=sys.stderr,
        )
    return 0


def _set_transition(session: Any, args: argparse.Namespace) -> None:
    """Turn the transition mode on or off (stored in the database, so later runs keep it)."""
    import getpass

    from ..services import provisioning

    if args.end_legacy_desk_login:
        provisioning.end_legacy_desk_access(session)
        return
    if args.legacy_desk_login == "anonymous":
        provisioning.set_legacy_desk_access(session, None, None)
        return
    password = os.environ.get("CONSULTEASE_LEGACY_DESK_PASSWORD")
    if not password:
        try:
            password = getpass.getpass(
                f"Password of the desks' shared login {args.legacy_desk_login!r}: "
            )
        except EOFError as err:  # no terminal (a script, systemd) and nothing on stdin
            raise provisioning.ProvisioningError(
                "no password for the shared login: type it at the prompt or set "
                "CONSULTEASE_LEGACY_DESK_PASSWORD"
            ) from err
    provisioning.set_legacy_desk_access(session, args.legacy_desk_login, password)
