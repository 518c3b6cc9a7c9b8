"""Broker credentials: desk-unit provisioning and the generated Mosquitto configuration.

Each desk unit gets its own broker user ``desk-{fid}`` with a random password.
Only a hash is kept (on the ``DeskUnit`` row, in the PBKDF2-SHA512 format that
Mosquitto 2 reads from its password file), so the password is shown exactly
once, when it is created or rotated. The password file and the ACL are
regenerated from the database; the ACL restricts every desk to its own topics
(contract section 5).

This module does not import paho: it writes files and rows only.
"""

from __future__ import annotations

import base64
import contextlib
import grp
import hashlib
import hmac
import logging
import os
import secrets
import ssl
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from .. import topics
from ..models import DeskUnit, Faculty, utcnow

logger = logging.getLogger(__name__)

DESK_USERNAME_PREFIX: Final = "desk-"
CENTRAL_USERNAME: Final = "consultease-central"
# Mosquitto's own tool uses 101 iterations; the passwords are 192-bit random
# strings, so iterations add nothing against guessing and cost broker CPU on every
# connect. 1000 keeps a margin at a negligible cost.
PBKDF2_ITERATIONS: Final = 1000
_SALT_BYTES: Final = 12
_HASH_BYTES: Final = 64

PASSWORD_FILE: Final = "passwd"  # noqa: S105 - a file name, not a password
ACL_FILE: Final = "acl"
CONF_FILE: Final = "mosquitto.conf"
# Per client: room for a whole campus's reconnect burst (4 messages from each of 10,000 desks).
BROKER_MAX_QUEUED_MESSAGES: Final = 100_000
CENTRAL_ENV_FILE: Final = "central.env"


class ProvisioningError(ValueError):
    """A provisioning request cannot be carried out; the message says why."""


# --------------------------------------------------------------------------- hashes


def generate_password() -> str:
    """A random broker password: 32 URL-safe characters (192 bits), safe in env files and firmware."""
    return secrets.token_urlsafe(24)


def mosquitto_hash(
    password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None
) -> str:
    """The ``$7$`` PBKDF2-SHA512 hash that Mosquitto 2 accepts in a password file."""
    salt = salt if salt is not None else secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations, _HASH_BYTES)
    return (
        f"$7${iterations}${base64.b64encode(salt).decode('ascii')}"
        f"${base64.b64encode(digest).decode('ascii')}"
    )


def verify_mosquitto_hash(password_hash: str, password: str) -> bool:
    """True when ``password`` matches a ``$7$`` hash (constant-time comparison)."""
    try:
        _empty, kind, iterations, salt_b64, digest_b64 = password_hash.split("$")
        if kind != "7":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(digest_b64, validate=True)
        actual = hashlib.pbkdf2_hmac(
            "sha512", password.encode("utf-8"), salt, int(iterations), len(expected)
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


def desk_username(faculty_id: int) -> str:
    """The broker username of faculty ``faculty_id``'s desk unit."""
    return f"{DESK_USERNAME_PREFIX}{int(faculty_id)}"


# --------------------------------------------------------------------------- desk credentials


@dataclass(frozen=True, slots=True)
class DeskCredentials:
    """A desk unit's configuration, including its password: show it once, never log it."""

    faculty_id: int
    faculty_name: str
    username: str
    password: str = field(repr=False)

    def render(self, broker_host: str, broker_port: int, tls_port: int | None = None) -> str:
        """The text an operator types into the desk unit's firmware configuration."""
        lines = [
            f"Desk unit configuration for faculty {self.faculty_id} ({self.faculty_name})",
            "Shown once: enter it into the desk unit now; it cannot be displayed again.",
            f"  MQTT broker host : {broker_host}",
            f"  MQTT broker port : {broker_port}",
        ]
        if tls_port is not None:
            lines.append(f"  MQTT TLS port    : {tls_port} (for desk units that support TLS)")
        lines += [
            f"  Faculty id       : {self.faculty_id}",
            f"  MQTT username    : {self.username}",
            f"  MQTT password    : {self.password}",
        ]
        return "\n".join(lines)


def _validated_faculty_id(faculty_id: object) -> int:
    if isinstance(faculty_id, bool) or not isinstance(faculty_id, int) or faculty_id <= 0:
        raise ProvisioningError("The faculty id must be a positive whole number.")
    return faculty_id


def _faculty(session: Session, faculty_id: int) -> Faculty:
    faculty = session.get(Faculty, _validated_faculty_id(faculty_id))
    if faculty is None:
        raise ProvisioningError(f"There is no faculty member with id {faculty_id}.")
    return faculty


def _desk(session: Session, faculty_id: int) -> DeskUnit | None:
    return session.scalar(select(DeskUnit).where(DeskUnit.faculty_id == faculty_id))


def provision_desk(session: Session, faculty_id: int) -> DeskCredentials:
    """Create the desk unit's broker credentials (in ``session``; the caller commits)."""
    faculty = _faculty(session, faculty_id)
    desk = _desk(session, faculty.id)
    if desk is not None and desk.password_hash and not desk.revoked:
        raise ProvisioningError(
            f"The desk unit of faculty {faculty.id} already has credentials; rotate them instead."
        )
    if desk is None:
        desk = DeskUnit(faculty_id=faculty.id)
        session.add(desk)
    return _set_new_password(session, desk, faculty, "provisioned")


def rotate_desk(session: Session, faculty_id: int) -> DeskCredentials:
    """Replace the desk unit's password; the old one stops working when the broker reloads."""
    faculty = _faculty(session, faculty_id)
    desk = _desk(session, faculty.id)
    if desk is None or not desk.password_hash or desk.revoked:
        raise ProvisioningError(
            f"The desk unit of faculty {faculty.id} has no active credentials; provision it first."
        )
    return _set_new_password(session, desk, faculty, "rotated")


def revoke_desk(session: Session, faculty_id: int) -> None:
    """Revoke the desk unit's credentials: it is left out of the password file and the ACL."""
    faculty = _faculty(session, faculty_id)
    desk = _desk(session, faculty.id)
    if desk is None or desk.revoked or not desk.password_hash:
        raise ProvisioningError(f"The desk unit of faculty {faculty.id} has no active credentials.")
    desk.revoked = True
    desk.password_hash = None
    session.flush()
    logger.info("desk unit credentials of faculty %d revoked", faculty.id)


def _set_new_password(
    session: Session, desk: DeskUnit, faculty: Faculty, verb: str
) -> DeskCredentials:
    password = generate_password()
    desk.mqtt_username = desk_username(faculty.id)
    desk.password_hash = mosquitto_hash(password)
    desk.revoked = False
    session.flush()
    logger.info(
        "desk unit credentials of faculty %d %s (user %s)", faculty.id, verb, desk.mqtt_username
    )
    return DeskCredentials(faculty.id, faculty.name, desk.mqtt_username, password)


@dataclass(frozen=True, slots=True)
class DeskAccount:
    """One active desk user as it goes into the password file and the ACL."""

    faculty_id: int
    username: str
    password_hash: str


def active_desk_accounts(session: Session) -> list[DeskAccount]:
    """Every provisioned, unrevoked desk unit, by faculty id."""
    rows = session.scalars(
        select(DeskUnit)
        .where(DeskUnit.revoked.is_(False), DeskUnit.password_hash.is_not(None))
        .order_by(DeskUnit.faculty_id)
    )
    return [
        DeskAccount(
            d.faculty_id, d.mqtt_username or desk_username(d.faculty_id), d.password_hash or ""
        )
        for d in rows
    ]


# --------------------------------------------------------------------------- rendering


def render_password_file(entries: Iterable[tuple[str, str]]) -> str:
    """``username:hash`` lines."""
    lines = []
    for username, password_hash in entries:
        if ":" in username or "\n" in username or "\n" in password_hash:
            raise ProvisioningError(f"invalid broker username {username!r}")
        lines.append(f"{username}:{password_hash}")
    return "\n".join(lines) + "\n"


def render_acl(
    central_username: str,
    desks: Iterable[DeskAccount],
    legacy: LegacyDeskAccess | None = None,
) -> str:
    """The Mosquitto ACL: the central user everywhere under consultease/, each desk only its own topics.

    With ``legacy`` (the transition mode, docs/migration.md) the original's shared desk login,
    or anonymous clients, may also publish and read as any desk.
    """
    out = [
        "# Generated by `consultease broker-config`; regenerated on every desk provisioning.",
        "# Contract section 5: one user per desk unit, restricted to its own topics.",
        "",
    ]
    if legacy is not None and legacy.username is None:
        # Lines before the first `user` line apply to anonymous clients.
        out += legacy_acl_lines(legacy)
    out += [
        f"user {central_username}",
        f"topic readwrite {topics.ROOT}/#",
        f"topic readwrite {topics.LEGACY_FACULTY_STATUS_FILTER}",
        "",
    ]
    for desk in desks:
        out += [f"user {desk.username}"]
        out += [f"topic write {t}" for t in desk_publish_topics(desk.faculty_id)]
        out += [f"topic read {t}" for t in desk_subscribe_topics(desk.faculty_id)]
        out += [""]
    if legacy is not None and legacy.username is not None:
        out += [f"user {legacy.username}", *legacy_acl_lines(legacy)]
    return "\n".join(out)


@dataclass(frozen=True, slots=True)
class LegacyDeskAccess:
    """The transition mode's login: the original's shared desk account, or anonymous (None)."""

    username: str | None
    password_hash: str | None


def legacy_acl_lines(legacy: LegacyDeskAccess) -> list[str]:
    """Any desk's topics (``+`` for the faculty id): what the transition mode lets in."""
    who = "anonymous clients" if legacy.username is None else f"the shared login {legacy.username}"
    return [
        f"# TRANSITION MODE (docs/migration.md): {who} may act as ANY desk unit.",
        *(f"topic write {t}" for t in desk_publish_topics_any()),
        *(f"topic read {t}" for t in desk_subscribe_topics_any()),
        "",
    ]


def desk_publish_topics_any() -> list[str]:
    """:func:`desk_publish_topics` with the faculty id left open (``+``)."""
    return [t.replace("/0/", "/+/", 1) for t in desk_publish_topics(0)]


def desk_subscribe_topics_any() -> list[str]:
    """:func:`desk_subscribe_topics` with the faculty id left open (``+``)."""
    return [t.replace("/0/", "/+/", 1) for t in desk_subscribe_topics(0)]


def legacy_desk_access(session: Session) -> LegacyDeskAccess | None:
    """The transition mode's login when it is on, else None."""
    from ..models import LegacyDeskLogin

    row = session.get(LegacyDeskLogin, 1)
    return None if row is None else LegacyDeskAccess(row.username, row.password_hash)


def set_legacy_desk_access(session: Session, username: str | None, password: str | None) -> None:
    """Turn the transition mode on: ``username``/``password`` of the shared login, or None for anonymous."""
    from ..models import LegacyDeskLogin

    if username is not None:
        if not username or ":" in username or any(c.isspace() for c in username):
            raise ProvisioningError(f"invalid broker username {username!r}")
        if len(username) > 64:  # legacy_desk_login.username
            raise ProvisioningError("the shared login's username is longer than 64 characters")
        if username == CENTRAL_USERNAME or username.startswith(DESK_USERNAME_PREFIX):
            raise ProvisioningError(f"{username!r} is reserved for ConsultEase's own accounts")
        if not password:
            raise ProvisioningError("the shared login needs its password")
    row = session.get(LegacyDeskLogin, 1) or LegacyDeskLogin(id=1)
    row.username = username
    row.password_hash = mosquitto_hash(password) if username is not None and password else None
    row.enabled_at = utcnow()
    session.add(row)


def end_legacy_desk_access(session: Session) -> bool:
    """Turn the transition mode off; False when it was not on."""
    from ..models import LegacyDeskLogin

    row = session.get(LegacyDeskLogin, 1)
    if row is None:
        return False
    session.delete(row)
    return True


def desk_publish_topics(faculty_id: int) -> list[str]:
    """Exactly what the deployed firmware publishes (contract section 2), and nothing else.

    Not ``/messages``, ``/requests`` or ``/cancellations``: the central system writes
    those and the desk's screen trusts them, so a stolen desk password must not forge
    a request there. ``/status`` is written by both (contract 1.4 and 2.1).
    """
    fid = int(faculty_id)
    return [
        topics.faculty_status_topic(fid),
        topics.legacy_faculty_status_topic(fid),
        topics.faculty_mac_status_topic(fid),
        topics.faculty_responses_topic(fid),
        topics.faculty_heartbeat_topic(fid),
        topics.faculty_diagnostics_topic(fid),
    ]


def desk_subscribe_topics(faculty_id: int) -> list[str]:
    """What the firmware subscribes to (contract section 2): its requests and cancellations."""
    return [
        topics.faculty_messages_topic(faculty_id),
        topics.faculty_cancellations_topic(faculty_id),
    ]


@dataclass(frozen=True, slots=True)
class TLSOptions:
    """Files of the optional TLS listener (paths as the broker will see them)."""

    certfile: Path
    keyfile: Path
    cafile: Path
    port: int = 8883
    # The TLS listener's own bind address (None: every interface). Independent of the
    # plain listener's, so the plain one can move to loopback while desks use TLS.
    listen_address: str | None = None


def validate_tls_files(tls: TLSOptions, group: str | None = None) -> None:
    """Refuse TLS files Mosquitto could not start with: missing, unreadable, or a key that is not the certificate's.

    With ``group`` (the broker's group), the key and certificates must be readable by
    it too: Mosquitto loads them after dropping root privileges.
    """
    for role, path in (("certificate", tls.certfile), ("key", tls.keyfile), ("CA", tls.cafile)):
        if not path.is_file():
            raise ProvisioningError(f"The TLS {role} {path} does not exist or is not a file.")
        try:
            with path.open("rb"):
                pass
        except OSError as err:
            raise ProvisioningError(
                f"The TLS {role} {path} cannot be read: {err.strerror}."
            ) from err
        if group is not None and not _group_can_read(path, group):
            raise ProvisioningError(
                f"The broker (group {group}) cannot read the TLS {role} {path}: "
                f"chgrp {group} {path} && chmod g+r {path}"
            )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(tls.certfile, tls.keyfile)
    except ssl.SSLError as err:
        reason = (
            "the key does not belong to the certificate"
            if "KEY_VALUES_MISMATCH" in str(err)
            else f"not a PEM certificate and key ({err.reason or err})"
        )
        raise ProvisioningError(f"TLS {tls.certfile} / {tls.keyfile}: {reason}.") from err
    try:
        context.load_verify_locations(cafile=tls.cafile)
    except ssl.SSLError as err:
        raise ProvisioningError(
            f"The TLS CA {tls.cafile} is not a PEM certificate ({err.reason or err})."
        ) from err


def _group_can_read(path: Path, group: str) -> bool:
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return True  # _write_private reports an unknown group
    st = path.stat()
    return bool(st.st_mode & 0o004) or (st.st_gid == gid and bool(st.st_mode & 0o040))


def central_broker_host(listen_address: str | None) -> str:
    """Where the central system reaches the plain listener: its bind address, or loopback."""
    if listen_address is None or listen_address in ("0.0.0.0", "::", "*", ""):  # noqa: S104
        return "127.0.0.1"
    return listen_address


def render_mosquitto_conf(
    install_dir: Path,
    *,
    port: int = 1883,
    listen_address: str | None = None,
    tls: TLSOptions | None = None,
    extra_lines: Sequence[str] = (),
    allow_anonymous: bool = False,
) -> str:
    """A Mosquitto 2 configuration fragment: listeners, no anonymous access, password file, ACL.

    ``allow_anonymous`` only for the transition mode of desks that had no login
    (docs/migration.md); the ACL then confines anonymous clients to desk topics.
    """
    plain = f"listener {port} {listen_address}" if listen_address else f"listener {port}"
    lines = [
        "# Generated by `consultease broker-config`. Do not edit: regenerate instead.",
        "per_listener_settings false",
        "allow_anonymous true" if allow_anonymous else "allow_anonymous false",
        # Requests are small packets: without this each waits ~40 ms for a delayed ACK.
        "set_tcp_nodelay true",
        # Mosquitto's default (1000) drops QoS 0 messages, e.g. desk responses, queued for a
        # subscriber that reads slower than a burst arrives: 10,000 desks reconnecting send the
        # central system 20,000+ at once (measured: 16,000 of 40,000 lost at the default).
        f"max_queued_messages {BROKER_MAX_QUEUED_MESSAGES}",
        f"password_file {install_dir / PASSWORD_FILE}",
        f"acl_file {install_dir / ACL_FILE}",
        "",
        *(
            ["# TRANSITION MODE: old desks without a login are let in (docs/migration.md)."]
            if allow_anonymous
            else []
        ),
        "# Plain MQTT: the deployed desk firmware connects here (contract: no TLS assumed).",
        plain,
        "protocol mqtt",
    ]
    if tls is not None:
        tls_listener = (
            f"listener {tls.port} {tls.listen_address}"
            if tls.listen_address
            else f"listener {tls.port}"
        )
        lines += [
            "",
            "# MQTT over TLS for clients that support it.",
            tls_listener,
            "protocol mqtt",
            f"certfile {tls.certfile}",
            f"keyfile {tls.keyfile}",
            f"cafile {tls.cafile}",
            "tls_version tlsv1.2",
        ]
    lines += list(extra_lines)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- files


def _write_private(path: Path, text: str, mode: int, group: str | None = None) -> None:
    """Write ``text`` atomically with ``mode`` from the start (never briefly world-readable).

    ``group`` (e.g. ``mosquitto``) owns the file so the broker, which drops root
    privileges before reading its password file and ACL, can read a 0640 file.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if group is None and path.exists():
            # Keep the group an earlier run gave the file (refreshes after provisioning).
            with contextlib.suppress(PermissionError):
                os.fchown(fd, -1, path.stat().st_gid)
        elif group is not None:
            try:
                os.fchown(fd, -1, grp.getgrnam(group).gr_gid)
            except (KeyError, PermissionError) as err:
                raise ProvisioningError(
                    f"Cannot give {path.name} to group {group!r} ({err}); add this user to that "
                    "group or run without --group."
                ) from err
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines of a systemd EnvironmentFile (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        values[key.strip()] = value.strip()
    return values


def _central_hash_from_password_file(path: Path, username: str) -> str | None:
    if not path.exists():
        return None
    for line in path.read_text(encoding="utf-8").splitlines():
        name, sep, password_hash = line.partition(":")
        if sep and name == username:
            return password_hash
    return None


@dataclass(frozen=True, slots=True)
class BrokerConfig:
    """What ``write_broker_config`` wrote (no secrets in here)."""

    out_dir: Path
    conf_path: Path
    password_path: Path
    acl_path: Path
    central_env_path: Path
    central_username: str
    central_created: bool
    desk_count: int


def _password_entries(
    central_user: str,
    central_hash: str,
    desks: Sequence[DeskAccount],
    legacy: LegacyDeskAccess | None,
) -> list[tuple[str, str]]:
    entries = [(central_user, central_hash), *((d.username, d.password_hash) for d in desks)]
    if legacy is not None and legacy.username is not None and legacy.password_hash:
        entries.append((legacy.username, legacy.password_hash))
    return entries


def write_broker_config(
    session: Session,
    out_dir: Path,
    *,
    install_dir: Path | None = None,
    port: int = 1883,
    listen_address: str | None = None,
    tls: TLSOptions | None = None,
    rotate_central: bool = False,
    central_host: str | None = None,
    group: str | None = None,
    extra_conf_lines: Sequence[str] = (),
) -> BrokerConfig:
    """Write mosquitto.conf, the password file, the ACL and the central system's env file.

    The central credentials are kept across runs (read back from ``central.env``
    and the password file) unless ``rotate_central``; ``central.env`` is mode 0600
    and always names the plain listener as it is now (``central_host`` defaults to
    its bind address). TLS files are checked before anything is written.
    """
    if tls is not None:
        validate_tls_files(tls, group)
    out_dir = Path(out_dir).absolute()
    install_dir = Path(install_dir).absolute() if install_dir else out_dir
    env_path = out_dir / CENTRAL_ENV_FILE
    password_path = out_dir / PASSWORD_FILE
    central_user = CENTRAL_USERNAME
    central_hash = None
    central_password = None
    if env_path.exists() and not rotate_central:
        env = read_env_file(env_path)
        central_user = env.get("CONSULTEASE_MQTT_USERNAME", CENTRAL_USERNAME)
        central_password = env.get("CONSULTEASE_MQTT_PASSWORD")
        central_hash = _central_hash_from_password_file(password_path, central_user)
        if central_password is None or not verify_mosquitto_hash(
            central_hash or "", central_password
        ):
            central_hash = None  # the two files disagree: new credentials
    created = central_hash is None  # a kept hash is one the kept password verifies
    if created:
        central_password = generate_password()
        central_hash = mosquitto_hash(central_password)
    env_lines = [
        "# The central system's broker credentials (generated by `consultease broker-config`).",
        "# Keep this file mode 0600; systemd reads it with EnvironmentFile=.",
        f"CONSULTEASE_MQTT_HOST={central_host or central_broker_host(listen_address)}",
        f"CONSULTEASE_MQTT_PORT={port}",
        f"CONSULTEASE_MQTT_USERNAME={central_user}",
        f"CONSULTEASE_MQTT_PASSWORD={central_password}",
    ]
    # Rewritten every time, so host and port follow the listener even when the password is kept.
    _write_private(env_path, "\n".join(env_lines) + "\n", 0o600)
    del central_password
    assert central_hash is not None
    desk_count, legacy = _write_access_files(session, out_dir, central_user, central_hash, group)
    acl_path = out_dir / ACL_FILE
    conf_path = out_dir / CONF_FILE
    _write_private(
        conf_path,
        render_mosquitto_conf(
            install_dir,
            port=port,
            listen_address=listen_address,
            tls=tls,
            extra_lines=extra_conf_lines,
            allow_anonymous=legacy is not None and legacy.username is None,
        ),
        0o644,
    )
    logger.info(
        "broker configuration written to %s (%d desk users, central credentials %s)",
        out_dir,
        desk_count,
        "created" if created else "kept",
    )
    return BrokerConfig(
        out_dir, conf_path, password_path, acl_path, env_path, central_user, created, desk_count
    )


def _write_access_files(
    session: Session, out_dir: Path, central_user: str, central_hash: str, group: str | None
) -> tuple[int, LegacyDeskAccess | None]:
    """The password file and the ACL from the database; the desk count and the transition login."""
    desks = active_desk_accounts(session)
    legacy = legacy_desk_access(session)
    _write_private(
        out_dir / PASSWORD_FILE,
        render_password_file(_password_entries(central_user, central_hash, desks, legacy)),
        0o640,
        group,
    )
    _write_private(out_dir / ACL_FILE, render_acl(central_user, desks, legacy), 0o640, group)
    return len(desks), legacy


def refresh_broker_files(session: Session, out_dir: Path, *, group: str | None = None) -> int:
    """Rewrite the password file and the ACL in ``out_dir`` from the database; returns the desk count.

    Keeps the central user's existing hash and leaves mosquitto.conf untouched.
    Mosquitto reads both files again on SIGHUP (``systemctl reload mosquitto``).
    """
    out_dir = Path(out_dir).absolute()
    env_path = out_dir / CENTRAL_ENV_FILE
    if not env_path.exists():
        raise ProvisioningError(
            f"{out_dir} holds no broker configuration; run `consultease broker-config --out {out_dir}` first."
        )
    central_user = read_env_file(env_path).get("CONSULTEASE_MQTT_USERNAME", CENTRAL_USERNAME)
    central_hash = _central_hash_from_password_file(out_dir / PASSWORD_FILE, central_user)
    if central_hash is None:
        raise ProvisioningError(
            f"The central user is missing from {out_dir / PASSWORD_FILE}; run broker-config again."
        )
    return _write_access_files(session, out_dir, central_user, central_hash, group)[0]
