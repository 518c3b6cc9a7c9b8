"""Services: the one MQTT service, the deprecated facade, the embedded broker."""
