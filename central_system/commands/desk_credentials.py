"""``consultease desk provision|rotate|revoke --faculty-id N``: desk-unit broker credentials."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> None:
    """Add the ``desk`` sub-command group."""
    p = subparsers.add_parser(
        "desk",
        help="give a faculty member's desk unit its own broker login, a new password, or revoke it",
        description="Each desk unit logs in to the MQTT broker as its own user and may use only "
        "its faculty member's topics. `provision` creates that login and prints the desk's "
        "settings once, `rotate` replaces the password (a replaced or lost unit), `revoke` "
        "shuts the unit out. The broker's password file and ACL are regenerated when "
        "--broker-config-dir is given; reload Mosquitto afterwards.",
    )
    sub = p.add_subparsers(dest="desk_command", required=True)
    for verb, text in (
        ("provision", "create a desk unit's credentials and print its configuration once"),
        ("rotate", "give a desk unit a new password and print its configuration once"),
        ("revoke", "revoke a desk unit's credentials"),
    ):
        q = sub.add_parser(verb, help=text)
        q.add_argument("--faculty-id", type=int, required=True)
        q.add_argument(
            "--broker-config-dir",
            type=Path,
            default=os.environ.get("CONSULTEASE_BROKER_CONFIG_DIR"),
            help="directory written by `consultease broker-config`: its password file and ACL are "
            "regenerated (env CONSULTEASE_BROKER_CONFIG_DIR)",
        )
        q.add_argument(
            "--broker-host",
            default=None,
            help="address the desk unit uses to reach the broker (default: settings mqtt_host)",
        )
        q.add_argument("--broker-port", type=int, default=None)
        q.set_defaults(func=run, verb=verb)


def run(args: argparse.Namespace) -> int:
    """Provision, rotate or revoke, then refresh the broker files."""
    from ..config import get_settings
    from ..controllers.admin_controller import AdminController
    from ..db import session_scope
    from ..services import provisioning

    settings = get_settings()
    controller = AdminController()
    action = {
        "provision": controller.provision_desk,
        "rotate": controller.rotate_desk,
        "revoke": controller.revoke_desk,
    }[args.verb]
    try:
        creds = action(args.faculty_id, actor="cli")
    except ValueError as err:
        print(err, file=sys.stderr)
        return 1
    if creds is not None:
        host = args.broker_host or settings.mqtt_host
        print(creds.render(host, args.broker_port or settings.mqtt_port))
        if host in ("127.0.0.1", "localhost", "::1"):
            print(
                "Note: the broker host above is a loopback address; give the kiosk's network "
                "address with --broker-host.",
                file=sys.stderr,
            )
    else:
        print(f"Desk unit credentials of faculty {args.faculty_id} revoked.")
    if args.broker_config_dir:
        try:
            with session_scope() as s:
                count = provisioning.refresh_broker_files(s, args.broker_config_dir)
        except (ValueError, OSError) as err:
            print(f"could not refresh the broker files: {err}", file=sys.stderr)
            return 1
        print(
            f"Broker password file and ACL refreshed ({count} desk units). Apply with: "
            "sudo systemctl reload mosquitto"
            + (" (restart instead to cut an open connection)" if args.verb != "provision" else "")
        )
    else:
        print(
            "Remember to regenerate the broker files: consultease broker-config --out DIR "
            "(or pass --broker-config-dir), then reload Mosquitto.",
            file=sys.stderr,
        )
    return 0
