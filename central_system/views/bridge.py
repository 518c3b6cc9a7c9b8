"""``MqttBridge``: the one way service-thread events reach widgets.

Controllers and the MQTT service call listeners on their own threads. The bridge
re-emits them as typed Qt signals; widgets connect to those signals and Qt
queues the call onto the Qt thread (``AutoConnection`` across threads is queued).
No widget ever registers a listener on a controller directly.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal


class MqttBridge(QObject):
    """Typed signals for consultation, faculty, connection and card-reader events."""

    #: consultation id, new status ("pending", "accepted", ...)
    consultation_changed = Signal(int, str)
    #: faculty id (its availability or desk liveness changed)
    faculty_changed = Signal(int)
    #: MQTT service state ("connected", "disconnected", ...)
    mqtt_state_changed = Signal(str)
    #: a normalised card UID read by the RFID reader
    card_tapped = Signal(str)

    def on_consultation(self, consultation_id: int, status: str) -> None:
        """Thread-safe: announce a consultation change."""
        self.consultation_changed.emit(int(consultation_id), str(status))

    def on_faculty(self, faculty_id: int) -> None:
        """Thread-safe: announce a faculty change."""
        self.faculty_changed.emit(int(faculty_id))

    def on_mqtt_state(self, state: str) -> None:
        """Thread-safe: announce an MQTT connection state change."""
        self.mqtt_state_changed.emit(str(state))

    def on_card(self, uid: str) -> None:
        """Thread-safe: announce a card tap."""
        self.card_tapped.emit(str(uid))
