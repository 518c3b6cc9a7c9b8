"""The security CLI: admin create-first / reset-password, desk provision/rotate/revoke, broker-config."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from central_system import db as dbmod
from central_system.cli import main as cli_main
from central_system.config import reset_settings_cache
from central_system.controllers.admin_controller import AdminController
from central_system.models import DeskUnit, Faculty
from central_system.services import provisioning


@pytest.fixture
def cli_env(sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("CONSULTEASE_DATABASE_URL", sqlite_url)
    monkeypatch.setenv("CONSULTEASE_MQTT_HOST", "192.0.2.10")
    reset_settings_cache()
    dbmod.init_db(sqlite_url)
    with dbmod.session_scope() as s:
        s.add(Faculty(id=3, name="Dr. Grace Hopper"))
    yield tmp_path
    dbmod.dispose_db()


def _answers(monkeypatch: pytest.MonkeyPatch, *values: str) -> None:
    it = iter(values)
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(it))


def test_admin_create_first_then_refuses(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _answers(monkeypatch, "short", "Lantern-Quarry-58", "Lantern-Quarry-58")
    assert cli_main(["admin", "create-first", "--username", "root-admin"]) == 0
    err = capsys.readouterr().err
    assert "at least 12" in err and "Lantern" not in err
    assert AdminController().authenticate("root-admin", "Lantern-Quarry-58")
    assert cli_main(["admin", "create-first", "--username", "second"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_admin_reset_password_forces_a_change(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    AdminController().create_first_admin("root-admin", "Lantern-Quarry-58")
    _answers(monkeypatch, "Temporary-Pass-991", "Temporary-Pass-991")
    assert cli_main(["admin", "reset-password", "root-admin"]) == 0
    result = AdminController().authenticate("root-admin", "Temporary-Pass-991")
    assert result and result.must_change_password
    assert cli_main(["admin", "reset-password", "nobody"]) == 1


def test_desk_provision_prints_once_and_stores_only_a_hash(
    cli_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = cli_env / "broker"
    assert cli_main(["broker-config", "--out", str(out_dir), "--group", ""]) == 0
    printed = capsys.readouterr().out
    central_password = provisioning.read_env_file(out_dir / "central.env")[
        "CONSULTEASE_MQTT_PASSWORD"
    ]
    assert central_password not in printed  # never printed
    assert stat.S_IMODE(os.stat(out_dir / "central.env").st_mode) == 0o600

    args = ["desk", "provision", "--faculty-id", "3", "--broker-config-dir", str(out_dir)]
    assert cli_main(args) == 0
    out = capsys.readouterr().out
    assert "192.0.2.10" in out and "desk-3" in out and "Faculty id       : 3" in out
    password = out.split("MQTT password    : ")[1].split()[0]
    with dbmod.session_scope() as s:
        desk = s.query(DeskUnit).filter_by(faculty_id=3).one()
        assert desk.password_hash and password not in desk.password_hash
        assert provisioning.verify_mosquitto_hash(desk.password_hash, password)
    assert "desk-3:$7$" in (out_dir / "passwd").read_text()
    assert "topic read consultease/faculty/3/messages" in (out_dir / "acl").read_text()
    assert cli_main(args) == 1  # a second provision is refused: rotate instead
    assert "rotate" in capsys.readouterr().err

    rotate = ["desk", "rotate", "--faculty-id", "3", "--broker-config-dir", str(out_dir)]
    assert cli_main(rotate) == 0
    new_password = capsys.readouterr().out.split("MQTT password    : ")[1].split()[0]
    assert new_password != password

    revoke = ["desk", "revoke", "--faculty-id", "3", "--broker-config-dir", str(out_dir)]
    assert cli_main(revoke) == 0
    assert "desk-3" not in (out_dir / "passwd").read_text()
    assert "desk-3" not in (out_dir / "acl").read_text()
    assert cli_main(["desk", "provision", "--faculty-id", "99"]) == 1
    actions = [(e.action, e.success) for e in AdminController().list_audit()]
    assert ("desk.provision", True) in actions and ("desk.revoke", True) in actions
    assert ("desk.provision", False) in actions


def test_broker_config_keeps_central_credentials_unless_rotated(cli_env: Path) -> None:
    out_dir = cli_env / "broker"
    assert cli_main(["broker-config", "--out", str(out_dir), "--group", ""]) == 0
    first = (out_dir / "central.env").read_text()
    assert cli_main(["broker-config", "--out", str(out_dir), "--group", ""]) == 0
    assert (out_dir / "central.env").read_text() == first
    assert (
        cli_main(["broker-config", "--out", str(out_dir), "--group", "", "--rotate-central"]) == 0
    )
    assert (out_dir / "central.env").read_text() != first
    assert cli_main(["broker-config", "--out", str(out_dir), "--tls-cert", "x.pem"]) == 2
