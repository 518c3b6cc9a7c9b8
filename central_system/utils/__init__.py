"""Helpers shared by controllers and views: topics, the plan's MQTT accessors."""
