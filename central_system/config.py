"""One settings object for the whole central system.

Values come from, in order of precedence: keyword arguments, ``CONSULTEASE_*``
environment variables, a TOML file named by ``CONSULTEASE_CONFIG``, defaults.
"""

from __future__ import annotations

import os
import re
import socket
import tomllib
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict


def _default_data_dir() -> Path:
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "share"
    return base / "consultease"


def _default_client_id() -> str:
    """A client id derived from the host name: stable across restarts, one per kiosk."""
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname())[:40] or "kiosk"
    return f"consultease-central-{host}"


ENV_PREFIX = "CONSULTEASE_"
# Longest bad value quoted back in a configuration error (a stray paste can be long).
_SHOWN_VALUE_CHARS = 60


class ConfigurationError(Exception):
    """A setting or a configured location cannot be used; ``str()`` is one line for the user.

    ``consultease`` prints it and exits with status 2 (a usage error, not a crash).
    """


class SettingsFileError(ConfigurationError):
    """The TOML file named by ``CONSULTEASE_CONFIG`` cannot be read or parsed."""


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the optional TOML file named by ``CONSULTEASE_CONFIG`` (flat keys, no prefix)."""

    def __init__(self, settings_cls: type[BaseSettings]) -> None:
        super().__init__(settings_cls)
        path = os.environ.get("CONSULTEASE_CONFIG")
        self._data: dict[str, Any] = {}
        if path:
            try:
                with open(path, "rb") as fh:
                    raw = tomllib.load(fh)
            except (OSError, tomllib.TOMLDecodeError) as err:
                raise SettingsFileError(
                    f"CONSULTEASE_CONFIG={path}: cannot read the settings file: "
                    f"{getattr(err, 'strerror', None) or err}"
                ) from err
            # Accept both flat keys and a [consultease] table.
            self._data = dict(raw.get("consultease", raw))

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return {k: v for k, v in self._data.items() if k in self.settings_cls.model_fields}


class Settings(BaseSettings):
    """Every tunable of ConsultEase. Environment variables are ``CONSULTEASE_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="CONSULTEASE_", extra="ignore")

    data_dir: Path = Field(default_factory=_default_data_dir)
    database_url: str | None = None

    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_username: str | None = None
    mqtt_password: SecretStr | None = None
    mqtt_tls_ca_certs: Path | None = None
    mqtt_tls_certfile: Path | None = None
    mqtt_tls_keyfile: Path | None = None
    mqtt_client_id: str = Field(default_factory=_default_client_id)
    # "5", "3.1.1", or "auto" (try 5, fall back to 3.1.1 when the broker refuses it).
    mqtt_protocol: Literal["auto", "5", "3.1.1"] = "auto"
    mqtt_keepalive: int = Field(default=30, ge=5, le=600)
    mqtt_max_payload_bytes: int = Field(default=256 * 1024, ge=1024)
    mqtt_max_backlog: int = Field(default=50_000, ge=100)
    mqtt_reconnect_max_delay: float = Field(default=60.0, gt=0)
    mqtt_inflight_window: int = Field(default=20, ge=1, le=65535)
    # Received messages waiting for the handlers; at either bound the service stops reading
    # from the broker until they catch up (async_mqtt_service.INBOUND_POLICY).
    mqtt_inbound_max_pending: int = Field(default=50_000, ge=100)
    mqtt_inbound_max_bytes: int = Field(default=64 * 1024 * 1024, ge=64 * 1024)

    # Contract section 3: a desk silent this long is offline.
    desk_offline_after_s: float = Field(default=90.0, gt=0)
    liveness_check_interval_s: float = Field(default=5.0, gt=0)
    # Issue 12: each desk's online/offline transitions are kept this many days (the uptime
    # reports); older rows are pruned hourly by the liveness service, except each desk's
    # newest one before the cut (docs/analytics.md "Desk uptime").
    desk_history_days: int = Field(default=400, ge=1, le=10 * 366)

    kiosk_inactivity_timeout_s: float = Field(default=120.0, gt=0)
    kiosk_logout_warning_s: float = Field(default=15.0, ge=0)
    rfid_device: str | None = None
    fullscreen: bool = False
    # A touch keyboard under the screens while a text field has focus (the request
    # message, admin login and forms); turn off where a physical keyboard is attached.
    kiosk_onscreen_keyboard: bool = True
    # With no ``server_url`` the kiosk runs its own central system as a ``consultease
    # server`` child on a Unix socket (``kiosk.local_server``), spoken to over the API:
    # its niceness above the kiosk's, so when both want the CPU the screen goes first
    # (the server's work waits a few ms, it is never dropped).
    kiosk_backend_nice: int = Field(default=5, ge=0, le=19)

    # Issue 12: a pending request nobody answers expires after this many seconds (0: never
    # by age) and, in any case, at the daily cut-off ``consultation_day_end`` (local time in
    # ``consultation_timezone``, an IANA name; the machine's zone when unset; empty: no daily
    # cut-off). The student sees "expired"; the desk gets a cancellation (contract 1.3).
    consultation_expire_after_s: float = Field(default=7200.0, ge=0)
    consultation_day_end: time | None = time(0, 0)
    consultation_timezone: str | None = None
    consultation_expiry_check_interval_s: float = Field(default=30.0, gt=0)
    # The server (``consultease server``) and the kiosk as its client (issue 9, docs/api.md).
    # Comma-separated base URLs of servers (https://…); unset: the kiosk starts its own.
    server_url: str | None = None
    server_token: SecretStr | None = None  # this kiosk's token (``consultease kiosk enroll``)
    server_ca_file: Path | None = None  # the CA that signed the server's certificate
    server_host: str = "127.0.0.1"
    server_port: int = Field(default=8080, ge=0, le=65535)
    server_tls_certfile: Path | None = None
    server_tls_keyfile: Path | None = None
    # On PostgreSQL: a standby tries for the active role this often; the active one checks
    # its lock connection this often, and after winning waits the grace before it connects
    # to MQTT (a deposed active needs up to one check to notice it and exit).
    server_standby_poll_s: float = Field(default=1.0, gt=0)
    server_lock_check_s: float = Field(default=0.5, gt=0)
    server_takeover_grace_s: float = Field(default=1.5, ge=0)
    # The event streams' keepalive (the API's and the web pages'); each open stream checks its
    # token or session again as often, so a kiosk revoked by the ``consultease kiosk revoke``
    # command, or a deactivated faculty account, loses its stream within it.
    server_keepalive_s: float = Field(default=15.0, gt=0)
    # A kiosk whose calls meet more different unknown cards than this in a minute gets 429 on
    # its card calls for the rest of that minute, audited (a stolen token probing UIDs); 0: off.
    server_unknown_cards_per_minute: int = Field(default=20, ge=0)

    log_level: str = "INFO"

    @field_validator("mqtt_client_id")
    @classmethod
    def _client_id_is_sane(cls, value: str) -> str:
        if not value or len(value) > 128 or any(c in value for c in "+#/\0"):
            raise ValueError("mqtt_client_id must be 1-128 characters without + # / or NUL")
        return value

    @field_validator("consultation_day_end", mode="before")
    @classmethod
    def _empty_day_end_is_none(cls, value: object) -> object:
        return None if value in ("", "none", "None") else value

    @field_validator("consultation_timezone")
    @classmethod
    def _timezone_exists(cls, value: str | None) -> str | None:
        if not value:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as err:
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name like Asia/Manila)"
            ) from err
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls), file_secret_settings)

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or a SQLite file in the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'consultease.db'}"

    @property
    def mqtt_tls_enabled(self) -> bool:
        """TLS is on exactly when a CA certificate file is configured."""
        return self.mqtt_tls_ca_certs is not None


# Settings that were once read and are no longer, with what replaced them. They are
# not refused (a kiosk must still start after an upgrade); ``consultease`` warns once.
RETIRED_SETTINGS: dict[str, str] = {
    "kiosk_backend": (
        "the kiosk always runs its own central system as a `consultease server` child, "
        "unless CONSULTEASE_SERVER_URL names servers to use; remove it"
    ),
}


def retired_settings_in_use() -> list[str]:
    """One line per retired setting still set (environment or TOML file): where, its value,
    and what replaced it. A TOML file that cannot be read is left to :class:`Settings`."""
    found: list[str] = []
    toml: dict[str, Any] = {}
    config = os.environ.get("CONSULTEASE_CONFIG")
    if config:
        try:
            with open(config, "rb") as fh:
                raw = tomllib.load(fh)
            toml = dict(raw.get("consultease", raw))
        except (OSError, tomllib.TOMLDecodeError, AttributeError, TypeError):
            toml = {}
    for name, replacement in RETIRED_SETTINGS.items():
        env_name = f"{ENV_PREFIX}{name.upper()}"
        sources = [(key, value) for key, value in os.environ.items() if key.upper() == env_name]
        if name in toml:
            sources.append((f"{name} in {config}", toml[name]))
        for where, value in sources:
            shown = repr(str(value))
            if len(shown) > _SHOWN_VALUE_CHARS:
                shown = shown[: _SHOWN_VALUE_CHARS - 1] + "…"
            found.append(f"{where}={shown} is no longer used: {replacement}")
    return found


def _where(field_name: str) -> str:
    """Where a setting's value came from, as the user would write it."""
    env_name = f"{ENV_PREFIX}{field_name.upper()}"
    if any(key.upper() == env_name for key in os.environ):
        return env_name
    config = os.environ.get("CONSULTEASE_CONFIG")
    return f"{field_name} in {config}" if config else field_name


def _expectation(message: str) -> str:
    """Pydantic's message as what the setting expects ("Input should be ..." -> "expected ...")."""
    for prefix in ("Input should be ", "Value error, "):
        if message.startswith(prefix):
            return ("expected " if prefix.startswith("Input") else "") + message[len(prefix) :]
    return message[:1].lower() + message[1:]


def _is_secret(name: str) -> bool:
    """A setting whose value is never quoted back: a password, a ``SecretStr`` (the kiosk's
    token), or the database URL (it may hold a password)."""
    field = Settings.model_fields.get(name)
    annotation = field.annotation if field is not None else None
    return (
        "password" in name
        or name == "database_url"
        or annotation is SecretStr
        or SecretStr in get_args(annotation)
    )


def describe_settings_error(err: ValidationError) -> str:
    """One line per bad setting, joined: the variable, the bad value, and what is expected.

    Secret values (passwords) are never quoted back.
    """
    parts = []
    for error in err.errors(include_url=False):
        loc = [str(p) for p in error.get("loc", ())]
        name = loc[0] if loc else "settings"
        where = _where(name) if name in Settings.model_fields else name
        value = error.get("input")
        if _is_secret(name) or isinstance(value, dict) or error.get("type") == "missing":
            shown = ""
        else:
            text = repr(str(value))
            if len(text) > _SHOWN_VALUE_CHARS:
                text = text[: _SHOWN_VALUE_CHARS - 1] + "…"
            shown = f"={text}"
        parts.append(f"{where}{shown} is not valid: {_expectation(str(error.get('msg', '')))}")
    return "; ".join(parts) or "invalid settings"


def is_settings_error(err: BaseException) -> bool:
    """True for a ``ValidationError`` raised while reading :class:`Settings` (not a payload's)."""
    return isinstance(err, ValidationError) and err.title == Settings.__name__


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once."""
    return Settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests change the environment between cases)."""
    get_settings.cache_clear()
