"""The plan's integration check: one MQTT connection per central system, and messages arrive."""

from __future__ import annotations

import json
import time
import warnings

from central_system.services.mqtt_service import MQTTService
from central_system.utils.mqtt_utils import publish_mqtt_message
from tests.integration.controller_helpers import running_app, wait_until
from tests.mqtt_probe import Probe

CONNECTED = "$SYS/broker/clients/connected"


def connected_clients(probe: Probe) -> int | None:
    values = [int(m.payload) for m in probe.messages if m.topic == CONNECTED]
    return values[-1] if values else None


def test_no_mqtt_service_conflicts(broker, make_settings, sqlite_url, topic_prefix):
    """Exactly one broker connection for the whole central system, old facade included."""
    sys_probe = Probe(broker.port, [CONNECTED], qos=0)
    data_probe = Probe(broker.port, [f"{topic_prefix}/#"])
    try:
        # $SYS is retained and refreshed every sys_interval (1 s): wait for the two probes.
        assert sys_probe.wait_for(lambda m: connected_clients(sys_probe) == 2, 10)
        with running_app(make_settings(database_url=sqlite_url)) as app:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                old = MQTTService()
                old.start()
                old.connect()
            old.publish(f"{topic_prefix}/old", {"via": "old facade"})
            publish_mqtt_message(f"{topic_prefix}/new", {"via": "mqtt_utils"})
            app.async_mqtt_service.publish_async(f"{topic_prefix}/svc", "direct")
            time.sleep(2.5)  # two sys_interval ticks
            assert sys_probe.wait_for(lambda m: connected_clients(sys_probe) == 3, 10), (
                f"expected 2 probes + 1 central connection, broker says {connected_clients(sys_probe)}"
            )
            assert data_probe.wait_for(lambda m: len(m) >= 3, 10)
            bodies = {m.topic.rsplit("/", 1)[1]: m.payload for m in data_probe.messages}
            assert json.loads(bodies["old"]) == {"via": "old facade"}
            assert json.loads(bodies["new"]) == {"via": "mqtt_utils"}
            assert bodies["svc"] == b"direct"
            assert app.async_mqtt_service.get_stats()["reconnects"] == 0
        assert wait_until(lambda: connected_clients(sys_probe) == 2, 10)
    finally:
        sys_probe.close()
        data_probe.close()
