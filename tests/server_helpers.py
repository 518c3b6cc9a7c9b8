"""Real ``consultease server`` processes for tests and benchmarks, and what they need."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine

from central_system import topics
from central_system.api.client import ApiClient
from central_system.controllers.admin_controller import AdminController
from central_system.db import create_db_engine
from central_system.server.auth import enroll_kiosk, revoke_kiosk
from tests.brokers import free_port
from tests.mqtt_probe import publish_raw

ROOT = Path(__file__).resolve().parents[1]
ADMIN_USER = "root-admin"
ADMIN_PASSWORD = "Correct-Horse-Battery-9"


class ServerProcess:
    """``python -m central_system.cli server`` on a free loopback port (or given ``port``)."""

    def __init__(
        self,
        db_url: str,
        mqtt_port: int,
        data_dir: Path,
        *,
        port: int | None = None,
        client_id: str = "test-central-server",
        tls: tuple[Path, Path] | None = None,
        extra_env: dict[str, str] | None = None,
        name: str = "server",
    ) -> None:
        self.port = port or free_port()
        self.db_url = db_url
        self.tls = tls
        self.log_path = data_dir / f"{name}-{self.port}.log"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CONSULTEASE_")},
            "PYTHONPATH": str(ROOT),
            "CONSULTEASE_DATA_DIR": str(data_dir),
            "CONSULTEASE_DATABASE_URL": db_url,
            "CONSULTEASE_MQTT_HOST": "127.0.0.1",
            "CONSULTEASE_MQTT_PORT": str(mqtt_port),
            "CONSULTEASE_MQTT_CLIENT_ID": client_id,
            "CONSULTEASE_MQTT_RECONNECT_MAX_DELAY": "2",
            **(extra_env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        cmd = [sys.executable, "-m", "central_system.cli", "server", "--port", str(self.port)]
        if self.tls:
            cmd += ["--tls-cert", str(self.tls[0]), "--tls-key", str(self.tls[1])]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def health(self, verify: Any = False) -> dict[str, Any] | None:
        try:
            r = httpx.get(self.url + "/healthz", timeout=2.0, verify=verify)
            result: dict[str, Any] = r.json()
            return result
        except (httpx.HTTPError, ValueError):
            return None

    def wait_role(self, role: str = "active", timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log()}")
            h = self.health()
            if (
                h is not None
                and h.get("role") == role
                and (role != "active" or h.get("mqtt") == "connected")
            ):
                return h
            time.sleep(0.1)
        raise AssertionError(f"server never became {role}: {self.health()} {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-4000:]
        except OSError:
            return ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


@contextlib.contextmanager
def running_server(
    db_url: str, mqtt_port: int, data_dir: Path, **kw: Any
) -> Iterator[ServerProcess]:
    """A started, active server; stopped afterwards."""
    server = ServerProcess(db_url, mqtt_port, data_dir, **kw).start()
    try:
        server.wait_role("active")
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def db_engine(db_url: str) -> Iterator[Engine]:
    """A separate engine on the server's database (the test's own connections)."""
    engine = create_db_engine(db_url)
    try:
        yield engine
    finally:
        engine.dispose()


def enroll(engine: Engine, name: str) -> str:
    """Enroll a kiosk directly in the database; its token."""
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        token = enroll_kiosk(s, name, "test")
        s.commit()
    return token


def revoke(engine: Engine, name: str) -> None:
    """Revoke a kiosk directly in the database."""
    from sqlalchemy.orm import Session

    with Session(engine) as s:
        revoke_kiosk(s, name, "test")
        s.commit()


def create_admin(engine: Engine) -> None:
    """The first administrator (argon2id), in the database."""
    AdminController(db=engine).create_first_admin(ADMIN_USER, ADMIN_PASSWORD)


def admin_client(url: str, token: str | None = None, **kw: Any) -> ApiClient:
    """A client signed in as the administrator."""
    client = ApiClient(url, token, **kw)
    client.sign_in(ADMIN_USER, ADMIN_PASSWORD)
    return client


def bring_online(client: ApiClient, mqtt_port: int, fid: int, timeout: float = 20.0) -> None:
    """Publish the desk's presence until the server shows the faculty member available."""
    payload = json.dumps(
        {"faculty_id": fid, "faculty_name": "Dr", "present": True, "status": "AVAILABLE"}
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish_raw(mqtt_port, topics.faculty_status_topic(fid), payload.encode(), qos=0)
        t_end = time.monotonic() + 1.0
        while time.monotonic() < t_end:
            if client.faculty_member(fid).can_request:
                return
            time.sleep(0.05)
    raise AssertionError(f"desk {fid} never came online: {client.faculty_member(fid)}")


def response_json(fid: int, cid: int, response_type: str = "ACKNOWLEDGE") -> bytes:
    """A desk's button press (contract 2.2)."""
    return json.dumps(
        {
            "faculty_id": fid,
            "faculty_name": "Dr",
            "response_type": response_type,
            "message_id": str(cid),
            "timestamp": "1",
            "faculty_present": True,
            "response_method": "physical_button",
            "status": "x",
        }
    ).encode()
