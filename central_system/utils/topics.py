"""The old path of :mod:`central_system.topics` (every MQTT topic string): the same names.

New code imports ``central_system.topics``, which sits below the services; this package
sits above them (``mqtt_utils`` is built on the MQTT service).
"""

from __future__ import annotations

from ..topics import *  # noqa: F403
