"""Helpers over the core: the plan's MQTT accessors (``mqtt_utils``, built on the MQTT service) and
the CLI's JSON log lines. ``topics`` here is the old path of :mod:`central_system.topics`.
"""
