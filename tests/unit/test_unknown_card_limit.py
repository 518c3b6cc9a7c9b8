"""A kiosk token cannot enumerate card UIDs (issue 9 review, item 10): past a few different
unknown cards a minute its card calls get 429 until the minute is over, audited once."""

from __future__ import annotations

import pytest

from central_system.server import auth as auth_mod
from central_system.server.auth import Authenticator, KioskPrincipal, WriteNeeded


class _Recording(Authenticator):
    def __init__(self, limit: int) -> None:
        super().__init__(None, unknown_cards_per_window=limit)  # type: ignore[arg-type]
        self.audited: list[tuple[str, str, str]] = []

    def audit_refusal(self, actor: str, action: str, target: str, reason: str) -> None:
        self.audited.append((actor, action, target))


LOBBY = KioskPrincipal(1, "lobby")
HALL = KioskPrincipal(2, "hall")


def test_past_the_limit_a_kiosks_card_calls_are_refused_until_the_window_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(auth_mod.time, "monotonic", lambda: now[0])
    auth = _Recording(limit=3)
    for uid in ("A1", "A2", "A3", "A1", "A1"):  # the same card again counts once
        assert not auth.unknown_card(LOBBY, uid, "/api/v1/students/me")
    assert not auth.card_calls_refused(LOBBY)
    with pytest.raises(WriteNeeded):  # on the event loop: the refusal's audit row waits
        auth.unknown_card(LOBBY, "A4", "/api/v1/students/me", may_write=False)
    assert not auth.card_calls_refused(LOBBY) and not auth.audited
    now[0] += 10
    assert auth.unknown_card(LOBBY, "A4", "/api/v1/students/me")
    assert auth.card_calls_refused(LOBBY) and not auth.card_calls_refused(HALL)
    assert auth.audited == [("kiosk:lobby", "api.rate_limited", "/api/v1/students/me")]
    now[0] += auth_mod.UNKNOWN_CARD_WINDOW_S - 10 - 0.1  # still the same window
    assert auth.card_calls_refused(LOBBY)
    now[0] += 0.2  # the window is over: a fresh one
    assert not auth.card_calls_refused(LOBBY)
    for uid in ("B1", "B2", "B3"):
        assert not auth.unknown_card(LOBBY, uid, "/api/v1/students/me")
    assert len(auth.audited) == 1


def test_a_limit_of_zero_turns_it_off() -> None:
    auth = _Recording(limit=0)
    assert not any(auth.unknown_card(LOBBY, f"{n:08X}", "/x") for n in range(1000))
    assert not auth.card_calls_refused(LOBBY) and not auth.audited
