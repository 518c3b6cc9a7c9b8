"""Numbers the README, docs/security.md and the wire contract promise, written here as literals.

Each test compares the code with the number the document states, never with the
code's own constant, so changing the constant without changing the promise fails.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from central_system.config import Settings
from central_system.controllers import outbound
from central_system.controllers.admin_controller import PasswordPolicyError, check_password_policy
from central_system.controllers.outbound import request_text
from central_system.services import provisioning
from faculty_desk_unit import protocol
from faculty_desk_unit.protocol import parse_request


def test_settings_defaults_are_the_documented_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONSULTEASE_CONFIG", raising=False)
    s = Settings()
    # README, Configuration.
    assert (s.mqtt_host, s.mqtt_port, s.mqtt_protocol) == ("127.0.0.1", 1883, "auto")
    assert s.mqtt_username is None and s.mqtt_password is None  # no default password
    assert s.mqtt_tls_ca_certs is None
    # Contract 3: a desk is online while it has sent anything within the last 90 s.
    assert s.desk_offline_after_s == 90.0
    # docs/security.md 1: automatic logout after 120 s of inactivity.
    assert s.kiosk_inactivity_timeout_s == 120.0


def test_the_desk_simulator_speaks_the_firmwares_numbers() -> None:
    assert protocol.MAX_MESSAGE_BYTES == 512  # contract 1.1
    assert protocol.FIRMWARE_HEARTBEAT_INTERVAL_S == 30.0  # contract 2.3, "about every 30 s"
    assert protocol.MAX_QUEUED_REQUESTS == 10  # contract 3.1, "10 slots"


def test_generated_broker_passwords_are_192_random_bits() -> None:
    # docs/security.md 2: "each with a random 192-bit password".
    passwords = {provisioning.generate_password() for _ in range(50)}
    assert len(passwords) == 50
    for password in passwords:
        assert re.fullmatch(r"[A-Za-z0-9_-]{32}", password)  # 32 x 6 bits


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("Tangerin-4x", False),  # 11 characters
        ("Tangerine-4x", True),  # 12 characters
    ],
)
def test_password_policy_minimum_is_12_characters(password: str, accepted: bool) -> None:
    # docs/security.md 1: "at least 12 characters".
    if accepted:
        check_password_policy(password, "alice")
    else:
        with pytest.raises(PasswordPolicyError, match="at least 12"):
            check_password_policy(password, "alice")


@settings(max_examples=200, deadline=None)
@example(cid=2**31 - 1, sid=2**31 - 1, name="名" * 400, message="m" * 300, utf8=False)
@example(cid=2**31 - 1, sid=2**31 - 1, name="名" * 400, message="m" * 300, utf8=True)
@example(cid=7, sid=8, name="Evil (SID:1): x\n", message="hello there", utf8=False)
@example(cid=7, sid=8, name="Evil (SID:1): x\n", message="hello there", utf8=True)
@example(cid=7, sid=8, name="😀" * 60, message="é日😀" * 200, utf8=True)
@given(
    cid=st.integers(1, 2**31 - 1),
    sid=st.integers(1, 2**31 - 1),
    name=st.text(min_size=0, max_size=400),
    message=st.text(min_size=0, max_size=500),
    utf8=st.booleans(),
)
def test_request_text_is_at_most_512_bytes_whatever_the_name_and_message(
    cid: int, sid: int, name: str, message: str, utf8: bool
) -> None:
    # Contract 1.1: the whole payload within 512 bytes and the firmware still finds the
    # id, the SID and the request (the prefix is never cut). A firmware desk draws each
    # byte as an ASCII glyph (3.1): it gets printable ASCII ending in "..." when
    # shortened; a UTF-8 desk gets text cut on a character boundary ending in "…".
    text = request_text(cid, name, sid, message, utf8=utf8)
    payload = text.encode("utf-8")
    assert len(payload) <= 512
    request = parse_request(payload)
    assert request.cid == str(cid) and request.sid == str(sid)
    assert "\ufffd" not in request.text or (utf8 and "\ufffd" in name + message)
    if not utf8:
        assert all(0x20 <= b < 0x7F for b in payload)
    expected = outbound.sanitize_request_text(
        outbound.fold_to_ascii(message) if not utf8 else message
    )
    if len(expected.encode()) <= 512 - 200:  # short enough to fit after any (capped) name
        assert request.message == expected
    elif len(expected.encode()) > 512:  # it cannot fit: shortened, and says so
        assert request.message.endswith("…" if utf8 else "...")
