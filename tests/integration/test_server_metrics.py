"""``GET /metrics`` on a real server (Mosquitto, SQLite and PostgreSQL), read by prometheus-client's parser."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from central_system import topics
from central_system.api.client import ApiClient
from tests.brokers import MosquittoBroker
from tests.integration.controller_helpers import presence_payload
from tests.mqtt_probe import publish_raw
from tests.server_helpers import (
    ROOT,
    admin_client,
    bring_online,
    create_admin,
    db_engine,
    enroll,
    response_json,
    running_server,
)

CARD = "04A1B2C3"


def _documented_names() -> set[str]:
    """Every metric name in the table of docs/analytics.md's metrics section."""
    text = (ROOT / "docs" / "analytics.md").read_text()
    section = text[text.index("## Metric names for `/metrics`") :]
    return set(re.findall(r"^\| `(consultease_[a-z_]+)`", section, flags=re.MULTILINE))


def _scrape(url: str) -> dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]:
    """Family name -> {(sample name, sorted labels): value}."""
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = {}
    for family in text_string_to_metric_families(r.text):
        families[family.name] = {
            (s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
        }
    return families


def latency_routes(latency: dict) -> set[str]:
    """Every ``route`` label of the API latency histogram."""
    return {dict(labels)["route"] for (_name, labels) in latency}


def _family_name(documented: str) -> str:
    # The parser names a counter's family without its "_total" suffix.
    return documented.removesuffix("_total")


def test_metrics_expose_every_documented_name_and_follow_the_system(
    db_url: str, broker: MosquittoBroker, tmp_path: Path
) -> None:
    names = _documented_names()
    assert len(names) == 15, names  # the table in docs/analytics.md
    with running_server(db_url, broker.port, tmp_path) as server, db_engine(db_url) as engine:
        before = _scrape(server.url)
        missing = {n for n in names if _family_name(n) not in before}
        assert not missing, f"documented but not exposed: {missing}"
        assert (
            before["consultease_server_role"][("consultease_server_role", (("role", "active"),))]
            == 1
        )
        assert before["consultease_mqtt_connected"][("consultease_mqtt_connected", ())] == 1
        assert before["consultease_desks_online"][("consultease_desks_online", ())] == 0
        accepted_key = ("consultease_requests_total", (("outcome", "accepted"),))
        assert before["consultease_requests"][accepted_key] == 0

        create_admin(engine)
        admin = admin_client(server.url)
        fac = admin.save_faculty(None, "Dr. Ada Cruz", "CS", "ada@example.edu")
        admin.register_student("Maria Santos", "2021-00001", "CS", CARD)
        bring_online(admin, broker.port, fac.id)
        kiosk = ApiClient(server.url, enroll(engine, "kiosk-a"))
        created = kiosk.create_consultation(CARD, fac.id, "Please help me with recursion.", "CS101")

        # An id route without a token (401): still counted under its template.
        assert httpx.get(f"{server.url}/api/v1/consultations/{created.id}").status_code == 401
        during = _scrape(server.url)
        assert during["consultease_desks_online"][("consultease_desks_online", ())] == 1
        assert during["consultease_desks_present"][("consultease_desks_present", ())] == 1
        assert during["consultease_requests_waiting"][("consultease_requests_waiting", ())] == 1
        published = ("consultease_mqtt_published_total", ())
        received = ("consultease_mqtt_received_total", ())
        assert (
            during["consultease_mqtt_received"][received]
            > before["consultease_mqtt_received"][received]
        )
        # The latency histogram counted the API calls under their route template, not their ids.
        latency = during["consultease_api_request_duration_seconds"]
        route_counts = {
            dict(labels)["route"]: v
            for (name, labels), v in latency.items()
            if name.endswith("_count") and dict(labels)["method"] == "POST"
        }
        assert route_counts.get("/api/v1/consultations", 0) >= 1, route_counts
        assert "/api/v1/consultations/{consultation_id}" in latency_routes(latency)
        # Templates, never concrete ids (bounded label values).
        assert not [r for r in latency_routes(latency) if re.search(r"/\d+(/|$)", r)]

        # The desk accepts: accepted +1, nothing waiting, one answer in the time-to-answer histogram.
        publish_raw(
            broker.port,
            topics.faculty_responses_topic(fac.id),
            response_json(fac.id, created.id),
            qos=1,
        )
        deadline = time.monotonic() + 15
        after = _scrape(server.url)
        while after["consultease_requests"][accepted_key] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            after = _scrape(server.url)
        assert after["consultease_requests"][accepted_key] == 1
        assert after["consultease_requests_waiting"][("consultease_requests_waiting", ())] == 0
        tta = after["consultease_time_to_answer_seconds"]
        assert tta[("consultease_time_to_answer_seconds_count", ())] == 1
        assert tta[("consultease_time_to_answer_seconds_bucket", (("le", "+Inf"),))] == 1
        assert (
            after["consultease_mqtt_published"][published]
            >= during["consultease_mqtt_published"][published]
        )
        # Nothing personal: no student name, card or request text in the scrape.
        body = httpx.get(server.url + "/metrics").text
        for secret in ("Maria", CARD, "recursion", "ada@example.edu"):
            assert secret not in body

        # The desk's last will: one disconnection (issue 12).
        drops = ("consultease_desk_disconnections_total", ())
        assert after["consultease_desk_disconnections"][drops] == 0
        publish_raw(
            broker.port, topics.faculty_status_topic(fac.id), presence_payload(fac.id, "OFFLINE")
        )
        deadline = time.monotonic() + 15
        gone = _scrape(server.url)
        while gone["consultease_desk_disconnections"][drops] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
            gone = _scrape(server.url)
        assert gone["consultease_desk_disconnections"][drops] == 1
