"""``consultease doctor``: checks that a deployment is healthy, one PASS/WARN/FAIL line each.

No check prints a secret. The broker is probed through
``async_mqtt_service.probe_broker`` (the only module that speaks MQTT).

A kiosk with ``CONSULTEASE_SERVER_URL`` set uses neither a broker nor a database: its
doctor checks the servers instead (each URL's ``/healthz``, the token with one kiosk
call, the CA file), then the clock and the disk.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..config import Settings
from ..topics import ROOT

if TYPE_CHECKING:
    from ..api.client import ApiClient

CENTRAL_STATUS_FILTER: Final = f"{ROOT}/system/central/+/status"
DISK_FAIL_BYTES: Final = 200 * 1024 * 1024
DISK_WARN_BYTES: Final = 1024 * 1024 * 1024
_CMD_TIMEOUT_S: Final = 5.0


class Status(StrEnum):
    """The outcome of one check."""

    PASS = "PASS"  # noqa: S105 - a check outcome, not a password
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One line of the doctor's report."""

    name: str
    status: Status
    detail: str

    def line(self) -> str:
        """``PASS  name  detail``."""
        return f"{self.status.value:<5} {self.name:<20} {self.detail}"


@dataclass
class _Context:
    settings: Settings
    probe_timeout: float
    central_statuses: dict[str, bytes] | None = None
    broker_ok: bool = False
    client: ApiClient | None = None  # a kiosk of a remote server: its client


# --------------------------------------------------------------------------- checks


def check_settings(ctx: _Context) -> CheckResult:
    """Settings are valid and no secret is missing."""
    s = ctx.settings
    problems: list[str] = []
    if s.mqtt_username and (s.mqtt_password is None or not s.mqtt_password.get_secret_value()):
        problems.append("CONSULTEASE_MQTT_USERNAME is set but CONSULTEASE_MQTT_PASSWORD is empty")
    if s.mqtt_password is not None and not s.mqtt_username:
        problems.append("an MQTT password is set without a username")
    for label, path in (
        ("mqtt_tls_ca_certs", s.mqtt_tls_ca_certs),
        ("mqtt_tls_certfile", s.mqtt_tls_certfile),
        ("mqtt_tls_keyfile", s.mqtt_tls_keyfile),
    ):
        if path is not None and not Path(path).is_file():
            problems.append(f"{label} points at a missing file: {path}")
    if problems:
        return CheckResult("settings", Status.FAIL, "; ".join(problems))
    if not s.mqtt_username:
        return CheckResult(
            "settings",
            Status.WARN,
            "valid, but MQTT runs without a username (anonymous access: development only)",
        )
    tls = "TLS" if s.mqtt_tls_enabled else "no TLS"
    return CheckResult("settings", Status.PASS, f"valid; MQTT user {s.mqtt_username}, {tls}")


def check_broker(ctx: _Context) -> CheckResult:
    """The broker answers and accepts the configured credentials."""
    from .async_mqtt_service import probe_broker

    s = ctx.settings
    where = f"{s.mqtt_host}:{s.mqtt_port}"
    result = probe_broker(s, CENTRAL_STATUS_FILTER, timeout=ctx.probe_timeout)
    if not result.reachable:
        return CheckResult("broker", Status.FAIL, result.error or f"cannot reach {where}")
    if result.auth_failed:
        return CheckResult(
            "broker credentials",
            Status.FAIL,
            f"{where} refused the credentials of user {s.mqtt_username!r}: {result.error}",
        )
    if not result.authenticated:
        return CheckResult("broker", Status.FAIL, result.error or f"{where} did not accept us")
    ctx.broker_ok = True
    ctx.central_statuses = result.retained
    who = f"as {s.mqtt_username}" if s.mqtt_username else "anonymously"
    return CheckResult("broker", Status.PASS, f"{where} reachable, connected {who}")


def check_central_connection(ctx: _Context) -> CheckResult:
    """Exactly one central system says ``online`` on its retained status topic (contract 4)."""
    if not ctx.broker_ok or ctx.central_statuses is None:
        return CheckResult("central connection", Status.FAIL, "not checked: broker unavailable")
    online = sorted(
        topic.split("/")[3]
        for topic, payload in ctx.central_statuses.items()
        if payload.strip() == b"online" and len(topic.split("/")) == 5
    )
    if len(online) == 1:
        mine = " (this kiosk)" if online[0] == ctx.settings.mqtt_client_id else ""
        return CheckResult(
            "central connection", Status.PASS, f"exactly one online: {online[0]}{mine}"
        )
    if not online:
        return CheckResult(
            "central connection",
            Status.FAIL,
            "no central system is connected (is the kiosk service running?)",
        )
    return CheckResult(
        "central connection",
        Status.FAIL,
        f"{len(online)} central systems online: {', '.join(online[:10])}",
    )


def check_database(ctx: _Context) -> CheckResult:
    """The database answers and its schema is at the newest Alembic revision."""
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from ..db import alembic_config, create_db_engine, schema_revision, sqlite_file_problem

    url = ctx.settings.effective_database_url
    shown = url.split("@")[-1]
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    parsed = make_url(url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if sqlite_file and sqlite_file != ":memory:":
        # Connecting would create an empty file; a doctor only looks (a probe at most).
        problem = sqlite_file_problem(Path(sqlite_file), create=False)
        if problem is not None:
            return CheckResult(
                "database", Status.FAIL, f"{shown} cannot be created or written: {problem}"
            )
        if not Path(sqlite_file).is_file():
            return CheckResult(
                "database",
                Status.FAIL,
                f"{shown} does not exist yet; the first `consultease serve` or `run` creates it",
            )
    try:
        engine = create_db_engine(url)
    except (SQLAlchemyError, OSError, ValueError) as err:
        return CheckResult("database", Status.FAIL, f"{shown}: {type(err).__name__}: {err}")
    try:
        current = schema_revision(engine)
    except (SQLAlchemyError, OSError) as err:
        return CheckResult("database", Status.FAIL, f"{shown} unreachable: {type(err).__name__}")
    finally:
        engine.dispose()
    if current is None:
        return CheckResult(
            "database", Status.FAIL, f"{shown} has no schema (start the app or run alembic)"
        )
    if current != head:
        return CheckResult(
            "database",
            Status.FAIL,
            f"{shown} schema at {current}, code expects {head}: run `alembic upgrade head`",
        )
    return CheckResult("database", Status.PASS, f"{shown} reachable, schema at head ({head})")


def check_legacy_desk_login(ctx: _Context) -> CheckResult:
    """Warns while the broker's transition mode lets desks in with the original's shared login."""
    from sqlalchemy import func, select
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlalchemy.orm import Session

    from ..db import create_db_engine
    from ..models import DeskUnit, Faculty, LegacyDeskLogin

    name = "desk logins"
    url = ctx.settings.effective_database_url
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return CheckResult(name, Status.WARN, "not checked: no database yet")  # never create it
    try:
        engine = create_db_engine(url)
    except (SQLAlchemyError, OSError, ValueError):
        return CheckResult(name, Status.WARN, "not checked: the database is not usable")
    try:
        with Session(engine) as s:
            row = s.get(LegacyDeskLogin, 1)
            faculty = int(s.scalar(select(func.count(Faculty.id))) or 0)
            own = int(
                s.scalar(
                    select(func.count(DeskUnit.id)).where(
                        DeskUnit.revoked.is_(False), DeskUnit.password_hash.is_not(None)
                    )
                )
                or 0
            )
    except (SQLAlchemyError, OSError):
        return CheckResult(name, Status.WARN, "not checked: the database is not readable")
    finally:
        engine.dispose()
    if row is None:
        return CheckResult(name, Status.PASS, f"{own} of {faculty} desks have their own login")
    who = "anonymous clients" if row.username is None else f"the shared login {row.username!r}"
    return CheckResult(
        name,
        Status.WARN,
        f"TRANSITION MODE: {who} may act as ANY desk (answer any request, read every "
        f"request); {own} of {faculty} desks have their own login. When every desk has been "
        "provisioned and flashed: consultease broker-config --out DIR --end-legacy-desk-login",
    )


def _run(argv: list[str]) -> str | None:
    exe = shutil.which(argv[0])
    if exe is None:
        return None
    try:
        done = subprocess.run(  # noqa: S603 - fixed tool, argument list, no shell
            [exe, *argv[1:]], capture_output=True, text=True, timeout=_CMD_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def check_clock(_ctx: _Context) -> CheckResult:
    """The system clock is synchronised (timedatectl or chronyc); unknown is a warning."""
    out = _run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
    if out is not None and out.strip() in ("yes", "no"):
        if out.strip() == "yes":
            return CheckResult("clock", Status.PASS, "synchronised (timedatectl)")
        return CheckResult(
            "clock", Status.WARN, "not synchronised (timedatectl): timestamps may drift"
        )
    out = _run(["chronyc", "tracking"])
    if out is not None:
        leap = next((ln for ln in out.splitlines() if ln.startswith("Leap status")), "")
        if "Normal" in leap:
            return CheckResult("clock", Status.PASS, "synchronised (chronyc)")
        return CheckResult("clock", Status.WARN, f"chronyc: {leap.strip() or 'unknown'}")
    return CheckResult(
        "clock", Status.WARN, "synchronisation unknown (no timedatectl or chronyc answer)"
    )


def check_disk(ctx: _Context) -> CheckResult:
    """Free space where the data directory lives."""
    path = Path(ctx.settings.data_dir).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    usage = shutil.disk_usage(path)
    free_mb = usage.free // (1024 * 1024)
    pct = 100 * usage.free / usage.total if usage.total else 0.0
    detail = f"{free_mb} MiB free ({pct:.0f} %) at {path}"
    if usage.free < DISK_FAIL_BYTES:
        return CheckResult("disk space", Status.FAIL, detail)
    if usage.free < DISK_WARN_BYTES or pct < 10:
        return CheckResult("disk space", Status.WARN, detail)
    return CheckResult("disk space", Status.PASS, detail)


# --------------------------------------------------------------------------- a kiosk of a server

REFUSED_401: Final = (
    "the server refused this kiosk's token (401): token revoked or wrong. On the server: "
    "consultease kiosk enroll NAME, then set CONSULTEASE_SERVER_TOKEN to the token it prints"
)


def check_client_settings(ctx: _Context) -> CheckResult:
    """The server URLs, the token and the CA file are set and usable (no secret shown)."""
    from ..api.client import sends_token_in_clear, split_urls

    s = ctx.settings
    name = "settings"
    try:
        urls = split_urls(s.server_url or "")
    except ValueError:
        return CheckResult(name, Status.FAIL, "CONSULTEASE_SERVER_URL names no server")
    problems = [f"{u} is not an http(s) URL" for u in urls if not u.startswith("http")]
    if s.server_token is None or not s.server_token.get_secret_value():
        problems.append(
            "CONSULTEASE_SERVER_TOKEN is not set (consultease kiosk enroll NAME on the server)"
        )
    if s.server_ca_file is not None and not Path(s.server_ca_file).is_file():
        problems.append(f"CONSULTEASE_SERVER_CA_FILE points at a missing file: {s.server_ca_file}")
    if problems:
        return CheckResult(name, Status.FAIL, "; ".join(problems))
    clear = [u for u in urls if sends_token_in_clear(u)]
    if clear:
        return CheckResult(
            name,
            Status.WARN,
            f"{', '.join(clear)}: plain http:// to another machine, the kiosk's token "
            "crosses the network unencrypted; use https:// and CONSULTEASE_SERVER_CA_FILE",
        )
    ca = f", CA file {s.server_ca_file}" if s.server_ca_file else ""
    return CheckResult(name, Status.PASS, f"kiosk of {len(urls)} server URL(s), token set{ca}")


def _client(ctx: _Context) -> ApiClient | None:
    """The kiosk's API client as the kiosk builds it (None: the settings do not allow one)."""
    from ..api.client import ApiClient

    s = ctx.settings
    if ctx.client is None and s.server_url and s.server_token is not None:
        if s.server_ca_file is not None and not Path(s.server_ca_file).is_file():
            return None
        try:
            ctx.client = ApiClient(
                s.server_url, s.server_token.get_secret_value(), ca_file=s.server_ca_file
            )
        except (ValueError, OSError):  # no URL; a CA file that is not a certificate
            return None
    return ctx.client


def _transport_problem(url: str, err: BaseException, ca_file: Path | None) -> str:
    """Why a server did not answer, in the words an installer needs."""
    import ssl

    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            trusted = f"the CA in {ca_file}" if ca_file else "the system's CAs"
            return f"TLS: its certificate is not trusted by {trusted} ({cause.verify_message})"
        if isinstance(cause, ssl.SSLError):
            return f"TLS handshake failed ({cause.reason or cause}): is it an https:// server?"
        cause = cause.__cause__ or cause.__context__
    return f"unreachable ({str(err).removeprefix(f'{url}: ')})"


def check_servers(ctx: _Context) -> CheckResult:
    """Each URL's ``/healthz``: reachable, exactly one server active, every one with its database.

    A standby is as it should be (it takes over when the active one dies); a standby that
    cannot reach the database is a warning (it could not), an active one a failure.
    """
    from ..api.transport import TransportError

    name = "servers"
    client = _client(ctx)
    if client is None:
        return CheckResult(name, Status.FAIL, "not checked: see settings")
    seen: list[str] = []
    active: list[str] = []
    no_database: list[str] = []  # /healthz says "database": "error"
    unreachable = 0
    for url in client.urls:
        try:
            health = client.health(url, timeout=ctx.probe_timeout)
        except (TransportError, ValueError) as err:
            unreachable += 1
            seen.append(f"{url} {_transport_problem(url, err, ctx.settings.server_ca_file)}")
            continue
        role = str(health.get("role", "?"))
        extra = [f"{k} {health[k]}" for k in ("mqtt", "database") if k in health]
        seen.append(f"{url} {role}" + (f" ({', '.join(extra)})" if extra else ""))
        if role == "active":
            active.append(url)
        if health.get("database") == "error":
            no_database.append(url)
    detail = "; ".join(seen)
    if len(active) == 1 and active[0] in no_database:
        return CheckResult(
            name, Status.FAIL, f"the active server cannot reach its database: {detail}"
        )
    if len(active) == 1 and not unreachable and not no_database:
        return CheckResult(name, Status.PASS, detail)
    if len(active) == 1:
        # A standby is no failure, but one that cannot reach the database cannot take over.
        why = [f"{u} cannot reach its database, so it could not take over" for u in no_database]
        if unreachable:
            why.append("no failover to an unreachable server")
        return CheckResult(name, Status.WARN, f"{detail}; {', '.join(why)}")
    if not active:
        return CheckResult(name, Status.FAIL, f"no active server: {detail}")
    return CheckResult(name, Status.FAIL, f"{len(active)} servers say active: {detail}")


def check_token(ctx: _Context) -> CheckResult:
    """The kiosk's token works: one authenticated kiosk call (the faculty list)."""
    from ..api.client import UNTRUSTED
    from ..api.errors import KioskError, NotAuthenticatedError, UnavailableError

    name = "kiosk token"
    client = _client(ctx)
    if client is None:
        return CheckResult(name, Status.FAIL, "not checked: see settings")
    try:
        faculty = client.faculty()
    except NotAuthenticatedError:
        return CheckResult(name, Status.FAIL, REFUSED_401)
    except UnavailableError as err:
        if str(err) == UNTRUSTED:
            return CheckResult(name, Status.FAIL, f"not checked: {err}")
        return CheckResult(name, Status.FAIL, "not checked: no active server answers")
    except KioskError as err:
        return CheckResult(name, Status.FAIL, f"{client.active_url} refused a kiosk call: {err}")
    return CheckResult(
        name, Status.PASS, f"accepted by {client.active_url} ({len(faculty)} faculty members)"
    )


CLIENT_CHECKS: Final[tuple[Callable[[_Context], CheckResult], ...]] = (
    check_client_settings,
    check_servers,
    check_token,
    check_clock,
    check_disk,
)

CHECKS: Final[tuple[Callable[[_Context], CheckResult], ...]] = (
    check_settings,
    check_broker,
    check_central_connection,
    check_database,
    check_legacy_desk_login,
    check_clock,
    check_disk,
)


def run_checks(settings: Settings, probe_timeout: float = 5.0) -> list[CheckResult]:
    """Run every check; a check that crashes is reported as FAIL, never raised.

    With ``server_url`` set (a kiosk of a remote server) the server checks replace the
    broker and database ones, which such a kiosk does not use.
    """
    ctx = _Context(settings, probe_timeout)
    results = []
    try:
        for check in CLIENT_CHECKS if settings.server_url else CHECKS:
            try:
                results.append(check(ctx))
            except Exception as err:  # a doctor must finish its report
                results.append(
                    CheckResult(
                        check.__name__.removeprefix("check_"),
                        Status.FAIL,
                        f"{type(err).__name__}: {err}",
                    )
                )
    finally:
        if ctx.client is not None:
            ctx.client.close()
    return results
