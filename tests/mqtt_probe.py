"""An independent paho client for tests: counts what really arrives at the broker."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion


class Probe:
    """A subscriber with its own connection (persistent session when ``client_id`` is given)."""

    def __init__(
        self, port: int, topics: list[str], qos: int = 1, client_id: str = "", clean: bool = True
    ) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.lock = threading.RLock()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=clean,
            protocol=paho.MQTTv311,
        )
        self.subscribed = threading.Event()
        self.topics = topics
        self.qos = qos
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self.subscribed.set()
        self.client.reconnect_delay_set(0.1, 1)
        self.client.connect("127.0.0.1", port, 30)
        self.client.loop_start()
        if not self.subscribed.wait(10):
            raise RuntimeError("probe could not subscribe")

    def _on_connect(self, client, userdata, flags, rc, props):
        client.subscribe([(t, self.qos) for t in self.topics])

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append(msg)

    def payloads(self) -> list[bytes]:
        with self.lock:
            return [m.payload for m in self.messages]

    def wait_for(
        self, predicate: Callable[[list[paho.MQTTMessage]], bool], timeout: float = 10.0
    ) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if predicate(self.messages):
                    return True
            time.sleep(0.02)
        with self.lock:
            return predicate(self.messages)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def publish_raw(
    port: int, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False
) -> None:
    """Publish one message from a throwaway client (plays a desk unit in tests)."""
    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv311)
    client.connect("127.0.0.1", port, 30)
    client.loop_start()
    info = client.publish(topic, payload, qos=qos, retain=retain)
    info.wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
