"""A configuration mistake is one line naming the setting, its value and what is expected; exit 2.

Each case runs the real ``consultease`` command in a child process, as a user would.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from central_system.db import sqlite_file_problem

ROOT = Path(__file__).resolve().parents[2]

# Every command that reads the settings, with the arguments it needs to get that far.
COMMANDS = [
    ["serve"],
    ["serve", "--embedded-broker"],
    ["server"],
    ["run"],
    ["demo"],
    ["demo", "--headless"],
    ["desk-unit", "--faculty-id", "1"],
    ["desk-units", "--count", "1"],
    ["doctor"],
    ["broker-config", "--out", "{tmp}/broker"],
    ["desk", "provision", "--faculty-id", "1"],
    ["admin", "create-first"],
    ["backup", "{tmp}/backup.db"],
    ["restore", "{tmp}/backup.db"],
    ["faculty", "list"],
    ["students", "list"],
]

# (variable, bad value, words the line must contain besides the two)
BAD_SETTINGS = [
    ("CONSULTEASE_MQTT_PORT", "notanumber", "valid integer"),
    ("CONSULTEASE_MQTT_PORT", "70000", "less than or equal to 65535"),
    ("CONSULTEASE_MQTT_PROTOCOL", "7", "'auto', '5' or '3.1.1'"),
    ("CONSULTEASE_DESK_OFFLINE_AFTER_S", "-1", "greater than 0"),
    ("CONSULTEASE_MQTT_CLIENT_ID", "kiosk/1", "without + # / or NUL"),
    ("CONSULTEASE_FULLSCREEN", "maybe", "valid boolean"),
]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CONSULTEASE_") or k.startswith("CONSULTEASE_TEST_")
    }
    env.update(
        QT_QPA_PLATFORM="offscreen",
        CONSULTEASE_DATA_DIR=str(tmp_path / "data"),
        TMPDIR=str(tmp_path),
        **extra,
    )
    return env


def _consultease(
    args: list[str], env: dict[str, str], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    return subprocess.run(
        [sys.executable, "-m", "central_system.cli", *argv],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_every_command_reports_a_bad_port_in_one_line(command: list[str], tmp_path: Path) -> None:
    result = _consultease(command, _env(tmp_path, CONSULTEASE_MQTT_PORT="notanumber"), tmp_path)
    line = _one_error_line(result)
    assert "CONSULTEASE_MQTT_PORT='notanumber'" in line
    assert "expected a valid integer" in line


@pytest.mark.parametrize(("variable", "value", "expected"), BAD_SETTINGS)
def test_each_bad_setting_names_variable_value_and_expectation(
    variable: str, value: str, expected: str, tmp_path: Path
) -> None:
    result = _consultease(["serve"], _env(tmp_path, **{variable: value}), tmp_path)
    line = _one_error_line(result)
    assert f"{variable}={value!r}" in line
    assert expected in line


def test_a_bad_setting_in_the_toml_file_names_the_file(tmp_path: Path) -> None:
    config = tmp_path / "consultease.toml"
    config.write_text("mqtt_port = 'eighteen'\n")
    result = _consultease(["serve"], _env(tmp_path, CONSULTEASE_CONFIG=str(config)), tmp_path)
    line = _one_error_line(result)
    assert f"mqtt_port in {config}='eighteen'" in line


def test_a_missing_settings_file_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    result = _consultease(["doctor"], _env(tmp_path, CONSULTEASE_CONFIG=str(missing)), tmp_path)
    line = _one_error_line(result)
    assert f"CONSULTEASE_CONFIG={missing}" in line and "No such file" in line


def test_a_secret_of_the_wrong_type_in_the_toml_file_is_never_quoted_back(
    tmp_path: Path,
) -> None:
    # A kiosk token (or password) written without quotes is not a string: the error names
    # the setting, never its value; so does a database URL, which may hold a password.
    config = tmp_path / "consultease.toml"
    config.write_text(
        'server_token = 918273645546372819\nmqtt_password = ["pw-in-a-list"]\n'
        'database_url = ["postgresql://u:db-pw-not-shown@h/x"]\n'
    )
    result = _consultease(["serve"], _env(tmp_path, CONSULTEASE_CONFIG=str(config)), tmp_path)
    line = _one_error_line(result)
    assert f"server_token in {config} is not valid" in line
    for secret in ("918273645546372819", "pw-in-a-list", "db-pw-not-shown"):
        assert secret not in line


def test_a_bad_password_value_is_never_quoted_back(tmp_path: Path) -> None:
    # Any string is a valid password; force an error elsewhere and check the password stays out.
    secret = "s3cret-value-not-to-print"
    env = _env(tmp_path, CONSULTEASE_MQTT_PORT="x", CONSULTEASE_MQTT_PASSWORD=secret)
    result = _consultease(["serve"], env, tmp_path)
    assert result.returncode == 2
    assert secret not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "url", ["sqlite:////proc/x/consultease.db", "sqlite:////proc/consultease.db"]
)
def test_serve_says_the_database_cannot_be_created_and_why(url: str, tmp_path: Path) -> None:
    result = _consultease(["serve"], _env(tmp_path, CONSULTEASE_DATABASE_URL=url), tmp_path)
    line = _one_error_line(result)
    assert "cannot be created or written" in line
    assert "does not allow new files" in line
    assert "CONSULTEASE_DATABASE_URL" in line


@pytest.mark.parametrize(
    "url", ["sqlite:////proc/x/consultease.db", "sqlite:////proc/consultease.db"]
)
def test_doctor_says_the_database_cannot_be_created(url: str, tmp_path: Path) -> None:
    env = _env(tmp_path, CONSULTEASE_DATABASE_URL=url, CONSULTEASE_MQTT_PORT="1")
    result = _consultease(["doctor", "--timeout", "1"], env, tmp_path)
    assert result.returncode == 1
    (line,) = [ln for ln in result.stdout.splitlines() if ln[6:26].strip() == "database"]
    assert line.startswith("FAIL")
    assert "cannot be created or written" in line and "does not exist yet" not in line
    assert not Path(url.removeprefix("sqlite:///")).exists()


def test_doctor_calls_a_creatable_database_not_yet_created(tmp_path: Path) -> None:
    target = tmp_path / "new" / "dir" / "consultease.db"
    problem = sqlite_file_problem(target, create=False)
    assert problem is None
    assert not (tmp_path / "new").exists()  # the probe left nothing behind
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_the_directory_should_be_is_named(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    for create in (False, True):
        problem = sqlite_file_problem(tmp_path / "blocker" / "sub" / "x.db", create=create)
        assert problem is not None and f"{tmp_path / 'blocker'} is not a directory" in problem


def test_an_unreachable_or_unusable_database_is_one_line_without_its_password(
    tmp_path: Path,
) -> None:
    from tests.brokers import free_port

    refused = f"postgresql+psycopg://consultease:pw-not-shown@127.0.0.1:{free_port()}/consultease"
    for url, reason in ((refused, "Connection refused"), ("nosuchdb://x/y", "nosuchdb")):
        env = _env(tmp_path, CONSULTEASE_DATABASE_URL=url)
        commands = [["faculty", "list"], ["admin", "create-first"]]
        if reason == "nosuchdb":
            # `serve` is `server`: it waits as a standby for a PostgreSQL that does not answer
            # yet (a database late at boot), but a URL that can never work is one line.
            commands += [["serve"], ["server"]]
        for command in commands:
            line = _one_error_line(_consultease(command, env, tmp_path))
            assert "cannot be used" in line and reason in line, line
            assert "pw-not-shown" not in line


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("postgresql://consultease:pw-not-shown@127.0.0.1:notaport/x", "notaport"),
        ("mysql://consultease:pw-not-shown@127.0.0.1/x", "MySQLdb"),
    ],
    ids=["port", "driver"],
)
def test_a_bad_port_or_a_driver_not_installed_is_one_line_without_its_password(
    url: str, reason: str, tmp_path: Path
) -> None:
    env = _env(tmp_path, CONSULTEASE_DATABASE_URL=url)
    line = _one_error_line(_consultease(["faculty", "list"], env, tmp_path))
    assert "cannot be used" in line and reason in line, line
    assert "pw-not-shown" not in line
    # The original's database given to import-legacy: the same mistakes, one line, exit 1.
    result = _consultease(["import-legacy", "--from", url, "--dry-run"], _env(tmp_path), tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert reason in result.stderr and "pw-not-shown" not in result.stderr, result.stderr
