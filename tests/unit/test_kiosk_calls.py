"""Both providers of the kiosk's calls match ``KioskCalls``, call by call."""

from __future__ import annotations

import inspect

import pytest

from central_system.controllers.kiosk_facade import KioskBackend
from central_system.kiosk.api_backend import ApiBackend
from central_system.kiosk.calls import KioskCalls

CALLS = sorted(
    name
    for name, value in vars(KioskCalls).items()
    if not name.startswith("_") and (callable(value) or isinstance(value, property))
)


def _shape(fn: object) -> list[tuple[str, object, object]]:
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    return [(p.name, p.kind, p.default) for p in sig.parameters.values()]


def test_the_protocol_names_every_call_the_screens_make() -> None:
    assert len(CALLS) >= 28
    assert {"login_by_card", "send_request", "connect_events", "mqtt_state"} <= set(CALLS)


@pytest.mark.parametrize("provider", [ApiBackend, KioskBackend])
@pytest.mark.parametrize("name", CALLS)
def test_each_provider_offers_the_call_with_the_same_parameters(provider: type, name: str) -> None:
    expected = getattr(KioskCalls, name)
    got = getattr(provider, name, None)
    if isinstance(expected, property):
        # A read-only attribute: a property, or set on the instance in __init__.
        in_init = f"self.{name} = " in inspect.getsource(provider.__init__)  # type: ignore[misc]
        assert isinstance(got, property) or in_init, f"{provider.__name__} lacks {name}"
        return
    assert got is not None, f"{provider.__name__} lacks {name}"
    assert _shape(got) == _shape(expected), name
