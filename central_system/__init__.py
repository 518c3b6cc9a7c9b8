"""ConsultEase central system: kiosk, controllers and the one asynchronous MQTT service."""

__version__ = "0.1.0"
