"""HTTPS: the server serves a certificate; a kiosk verifies it against its CA file setting."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from central_system.api.client import ApiClient
from central_system.api.errors import UnavailableError
from central_system.models import KioskToken
from tests.brokers import MosquittoBroker
from tests.server_helpers import db_engine, enroll, running_server

trustme = pytest.importorskip("trustme")


def test_a_kiosk_talks_https_to_a_server_its_ca_signed_and_refuses_any_other(
    sqlite_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file, key_file, ca_file = (
        tmp_path / "server.pem",
        tmp_path / "server.key",
        tmp_path / "ca.pem",
    )
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    ca.cert_pem.write_to_path(str(ca_file))
    other_ca_file = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca_file))

    with running_server(sqlite_url, broker.port, tmp_path, tls=(cert_file, key_file)) as server:
        assert server.url.startswith("https://")
        # /healthz over TLS, verified against the right CA.
        context = ssl.create_default_context(cafile=str(ca_file))
        assert httpx.get(server.url + "/healthz", verify=context).json()["role"] == "active"
        with db_engine(sqlite_url) as engine:
            good_token = enroll(engine, "good")
            bad_token = enroll(engine, "tricked")
        good = ApiClient(server.url, good_token, ca_file=ca_file)
        assert good.faculty() == []
        # A kiosk whose CA file names another CA refuses the server: nothing is sent.
        tricked = ApiClient(server.url, bad_token, ca_file=other_ca_file)
        with pytest.raises(UnavailableError, match="certificate is not signed"):
            tricked.faculty()
        # And a kiosk without a CA file does not trust the self-made certificate either.
        with pytest.raises(UnavailableError):
            ApiClient(server.url, bad_token).faculty()
        # Plain HTTP to the TLS port gets nowhere.
        with pytest.raises(httpx.HTTPError):
            httpx.get(server.url.replace("https://", "http://") + "/healthz", timeout=3)
        with db_engine(sqlite_url) as engine, Session(engine) as s:
            used = {k.name: k.last_used_at for k in s.scalars(select(KioskToken))}
        assert used["good"] is not None
        assert used["tricked"] is None  # its token never reached the server
        good.close()
        tricked.close()
