"""What the kiosk's System tab says the central system is, in words a person understands
now that the kiosk is always a client of a server (issue 9): the server's address and
role, not "child process N" (the kiosk's own server is checked in
tests/e2e/test_kiosk_local_server.py, its admin-screens test)."""

from __future__ import annotations

from pathlib import Path

from central_system.api.client import ApiClient
from central_system.kiosk.api_backend import ApiBackend
from tests.brokers import MosquittoBroker
from tests.server_helpers import (
    ADMIN_PASSWORD,
    ADMIN_USER,
    create_admin,
    db_engine,
    enroll,
    running_server,
)


def test_a_kiosk_on_a_server_names_that_server_and_its_role(
    broker: MosquittoBroker, tmp_path: Path
) -> None:
    db_url = f"sqlite:///{tmp_path / 'consultease.db'}"
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        create_admin(engine)
        backend = ApiBackend(ApiClient(server.url, enroll(engine, "kiosk-lobby")))
        try:
            backend.admin_login(ADMIN_USER, ADMIN_PASSWORD)
            stats = backend.system_stats()
        finally:
            backend.close()
    assert stats["backend"] == f"server {server.url} (active)"
    assert stats["role"] == "active"
