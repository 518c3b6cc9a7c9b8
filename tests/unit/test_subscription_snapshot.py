"""The network thread's echo check survives a subscribe() on another thread (a race seen in e2e)."""

from __future__ import annotations

from pathlib import Path

import pytest
from paho.mqtt.enums import MQTTProtocolVersion

from central_system.config import Settings
from central_system.services import async_mqtt_service as svcmod


def test_echo_check_reads_a_snapshot_of_the_subscriptions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = svcmod.AsyncMQTTService(Settings(data_dir=tmp_path))
    # Iteration must go on after the first filter: that one has no No Local handler.
    service.subscribe("consultease/faculty/+/responses", lambda _m: None, 1)
    service.subscribe("consultease/faculty/+/status", lambda _m: None, 1, no_local=True)
    service._protocol = MQTTProtocolVersion.MQTTv5
    service._broker_subs = {"consultease/faculty/#": (1, False)}
    real = svcmod.filter_covers
    added: list[int] = []

    def covers_while_someone_subscribes(outer: str, inner: str) -> bool:
        # What another thread's subscribe() did in the middle of the check.
        if not added:
            added.append(1)
            service.subscribe("consultease/faculty/+/heartbeat", lambda _m: None, 1)
        return real(outer, inner)

    monkeypatch.setattr(svcmod, "filter_covers", covers_while_someone_subscribes)
    assert service._has_local_echo_risk is True  # no RuntimeError, and the right answer
    assert added == [1]
