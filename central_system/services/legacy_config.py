"""The original ConsultEase's ``config.json`` as a ``CONSULTEASE_CONFIG`` TOML file.

Carried over: the MQTT broker (host, port, the central system's username and
password, TLS and its CA file) and ``ui.fullscreen``. The original's database
becomes the *source* of ``consultease import-legacy`` (printed as a comment),
never our ``database_url``: both use tables named ``students``, ``faculty`` …,
so ConsultEase needs its own database (see docs/migration.md).
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import URL, make_url


class LegacyConfigError(ValueError):
    """The file is not a usable config.json; ``str(err)`` says why."""


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    # A JSON string is a valid TOML basic string (same escapes, \\uXXXX included).
    return json.dumps(str(value), ensure_ascii=False)


def _looks_encrypted(value: object) -> bool:
    # The original could encrypt secrets with Fernet (tokens start with "gAAAAA").
    return isinstance(value, str) and value.startswith("gAAAAA")


def legacy_database_url(database: dict[str, Any]) -> str | None:
    """The original's database as a URL for ``--from`` (None when it cannot be told)."""
    kind = str(database.get("type", "sqlite")).lower()
    if kind == "sqlite":
        return f"sqlite:///{database.get('path', 'consultease.db')}"
    if kind in ("postgresql", "postgres"):
        password = database.get("password") or None
        return URL.create(
            "postgresql",
            username=database.get("user") or None,
            password=password if not _looks_encrypted(password) else None,
            host=database.get("host") or None,
            port=int(database["port"]) if database.get("port") else None,
            database=database.get("name", "consultease"),
        ).render_as_string(hide_password=False)
    return None


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def convert_config(raw: bytes) -> tuple[str, list[str]]:
    """The TOML text for ``raw`` (the config.json bytes) and notes for the administrator."""
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise LegacyConfigError(f"not a JSON file: {err}") from err
    if not isinstance(data, dict):
        raise LegacyConfigError("the file is not a JSON object")
    notes: list[str] = []
    mqtt = _section(data, "mqtt")
    ui = _section(data, "ui")
    database = _section(data, "database")
    lines = [
        "# ConsultEase settings converted from the original's config.json",
        "# (consultease import-legacy --config … --write-config …). Point CONSULTEASE_CONFIG here.",
        "[consultease]",
    ]
    pairs: list[tuple[str, object]] = []
    if mqtt.get("broker_host"):
        pairs.append(("mqtt_host", mqtt["broker_host"]))
    if mqtt.get("broker_port"):
        try:
            pairs.append(("mqtt_port", int(mqtt["broker_port"])))
        except (TypeError, ValueError):
            notes.append(f"mqtt.broker_port {mqtt['broker_port']!r} is not a number; left out")
    for ours, theirs in (("mqtt_username", "username"), ("mqtt_password", "password")):
        value = mqtt.get(theirs)
        if _looks_encrypted(value):
            notes.append(f"mqtt.{theirs} is encrypted in config.json; set {ours} by hand")
        elif value:
            pairs.append((ours, value))
    ca = next(
        (
            mqtt[k]
            for k in ("ca_certs", "tls_ca_certs", "ca_cert", "ca_file", "tls_ca")
            if mqtt.get(k)
        ),
        None,
    )
    if mqtt.get("use_tls"):
        if ca:
            pairs.append(("mqtt_tls_ca_certs", ca))
        else:
            notes.append(
                "mqtt.use_tls is on but config.json names no CA file; set mqtt_tls_ca_certs "
                "(ConsultEase turns TLS on exactly when a CA file is set)"
            )
    for key in ("certfile", "tls_certfile", "keyfile", "tls_keyfile"):
        if mqtt.get(key):
            ours = "mqtt_tls_certfile" if "cert" in key else "mqtt_tls_keyfile"
            pairs.append((ours, mqtt[key]))
    if "fullscreen" in ui:
        pairs.append(("fullscreen", bool(ui["fullscreen"])))
    if mqtt.get("client_id"):
        notes.append(
            "mqtt.client_id is not carried over: ConsultEase derives a stable one per host "
            "(two kiosks with one id would disconnect each other)"
        )
    lines.extend(f"{key} = {_toml(value)}" for key, value in pairs)
    source = legacy_database_url(database)
    if source is not None:
        shown = make_url(source).render_as_string(hide_password=True)
        lines += [
            "",
            "# The original's database is the source of the import, not ConsultEase's own database:",
            f"#   consultease import-legacy --from '{shown}'",
            "# ConsultEase's database: database_url (default: a SQLite file in data_dir).",
        ]
    else:
        notes.append(f"database.type {database.get('type')!r} is not SQLite or PostgreSQL")
    if any(isinstance(mqtt.get(k), str) and mqtt.get(k) for k in ("password",)):
        notes.append("the file holds the broker password: keep it readable by the service only")
    return "\n".join(lines) + "\n", notes
