"""The desk-unit side of ConsultEase: a simulator that speaks the deployed firmware's contract v1."""

from .desk import DeskStats, DeskUnit
from .fleet import DeskFleet
from .loop import NetworkLoop
from .protocol import (
    DeskProtocolError,
    DeskRequest,
    MalformedCancellationError,
    MalformedRequestError,
    NotARequestError,
    build_heartbeat_json,
    build_presence_json,
    build_response_json,
    jittered_backoff,
    parse_cancellation,
    parse_request,
)

__all__ = [
    "DeskFleet",
    "DeskProtocolError",
    "DeskRequest",
    "DeskStats",
    "DeskUnit",
    "MalformedCancellationError",
    "MalformedRequestError",
    "NetworkLoop",
    "NotARequestError",
    "build_heartbeat_json",
    "build_presence_json",
    "build_response_json",
    "jittered_backoff",
    "parse_cancellation",
    "parse_request",
]
