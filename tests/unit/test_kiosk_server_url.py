"""A kiosk whose server URL is plain http:// to another machine says so (its token is sent
in clear): a warning in the log at start, never the token, and a WARN from the doctor."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import SecretStr

from central_system.api.client import sends_token_in_clear
from central_system.config import Settings
from central_system.kiosk.api_backend import ApiBackend
from central_system.services.doctor import Status, _Context, check_client_settings

TOKEN = "cek_not-for-the-log-0123456789"


@pytest.mark.parametrize(
    ("url", "clear"),
    [
        ("http://ce.example.edu:8080", True),
        ("http://192.168.1.20:8080", True),
        ("http://[fe80::1]:8080", True),
        ("https://ce.example.edu:8443", False),
        ("http://127.0.0.1:8080", False),
        ("http://127.8.9.10:8080", False),
        ("http://localhost:8080", False),
        ("http://[::1]:8080", False),
    ],
)
def test_only_http_to_another_machine_sends_the_token_in_clear(url: str, clear: bool) -> None:
    assert sends_token_in_clear(url) is clear


def _settings(url: str, tmp_path: Path) -> Settings:
    return Settings(server_url=url, server_token=SecretStr(TOKEN), data_dir=tmp_path)


def test_the_kiosk_warns_at_start_about_a_cleartext_server_url_without_logging_the_token(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    with caplog.at_level(logging.WARNING, logger="central_system.kiosk.api_backend"):
        ApiBackend.from_settings(_settings("https://a.example.edu,http://b.example.edu", tmp_path))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "http://b.example.edu" in warnings[0] and "unencrypted" in warnings[0]
    assert TOKEN not in caplog.text

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="central_system.kiosk.api_backend"):
        ApiBackend.from_settings(_settings("https://a.example.edu,http://127.0.0.1:8080", tmp_path))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_the_doctor_warns_about_a_cleartext_server_url_and_passes_https(tmp_path: Path) -> None:
    result = check_client_settings(_Context(_settings("http://ce.example.edu:8080", tmp_path), 1))
    assert result.status == Status.WARN and "unencrypted" in result.detail
    assert TOKEN not in result.line()
    result = check_client_settings(_Context(_settings("https://ce.example.edu", tmp_path), 1))
    assert result.status == Status.PASS


def test_the_doctor_fails_a_kiosk_of_a_server_without_a_token(tmp_path: Path) -> None:
    settings = Settings(server_url="https://ce.example.edu", data_dir=tmp_path)
    result = check_client_settings(_Context(settings, 1))
    assert result.status == Status.FAIL and "CONSULTEASE_SERVER_TOKEN" in result.detail
