"""RFID card readers: USB keyboard-wedge readers through evdev, and a simulated reader.

A keyboard-wedge reader "types" the card's UID followed by Enter. Reading it
through evdev (with the device grabbed) keeps those keystrokes out of the kiosk's
widgets, so a card tap can never land in a text field. ``evdev`` is imported
lazily: the kiosk, the demo and the tests run where it is not installed.

Readers call ``on_uid(uid)`` on their own thread; the kiosk forwards that to the
Qt thread through a queued signal.
"""

from __future__ import annotations

import contextlib
import logging
import re
import select
import threading
import time
from collections.abc import Callable
from typing import Any, Final

logger = logging.getLogger(__name__)

UidCallback = Callable[[str], None]

# A UID longer than this is noise (a stuck key, a keyboard mistaken for a reader).
MAX_UID_LENGTH: Final = 64
# How long one select() waits, so stop() is honoured within this time.
POLL_INTERVAL_S: Final = 0.25
# After the device vanishes (unplugged), try to reopen it this often.
REOPEN_INTERVAL_S: Final = 2.0
# Digits typed this long apart do not belong to one card (a reader types a UID in ~50 ms).
MAX_KEY_GAP_S: Final = 1.0

_SEPARATORS = re.compile(r"[\s:\-]")
_VALID_UID = re.compile(r"^[0-9A-F]{4,64}$")


class RFIDError(Exception):
    """Base class of RFID reader errors."""


class InvalidUIDError(RFIDError, ValueError):
    """A UID that is empty, too long or not hexadecimal/decimal digits."""


def normalize_uid(raw: str) -> str:
    """A UID as StudentController stores it: no separators, upper case, 4-64 hex digits.

    Raises InvalidUIDError.
    """
    uid = _SEPARATORS.sub("", str(raw).strip()).upper()
    if uid.startswith("0X"):
        uid = uid[2:]
    if not _VALID_UID.match(uid):
        raise InvalidUIDError(f"not a card UID: {str(raw)[:40]!r}")
    return uid


class RFIDReader:
    """Base class: delivers normalised UIDs to the registered callbacks."""

    def __init__(self) -> None:
        self._callbacks: list[UidCallback] = []
        self._lock = threading.Lock()

    def add_callback(self, callback: UidCallback) -> Callable[[], None]:
        """Call ``callback(uid)`` for every card read. Returns the remover."""
        with self._lock:
            self._callbacks.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._callbacks:
                    self._callbacks.remove(callback)

        return remove

    def start(self) -> None:
        """Begin reading (no-op for readers without a thread)."""

    def stop(self) -> None:
        """Stop reading and release the device."""

    def _emit(self, raw: str) -> None:
        """Normalise ``raw`` and hand it to every callback; a bad read is logged and dropped."""
        try:
            uid = normalize_uid(raw)
        except InvalidUIDError:
            logger.warning("RFID: ignored unreadable card data (%d characters)", len(raw))
            return
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(uid)
            except Exception:
                logger.exception("RFID callback failed")


class SimulatedRFIDReader(RFIDReader):
    """A reader driven by code: ``tap(uid)`` behaves like a card on the reader (demo, tests)."""

    def tap(self, uid: str) -> None:
        """Simulate a card tap; callbacks run on the caller's thread."""
        self._emit(uid)


# evdev key names a keyboard-wedge reader types, mapped to characters.
_KEY_CHARS: Final[dict[str, str]] = {
    **{f"KEY_{d}": d for d in "0123456789"},
    **{f"KEY_KP{d}": d for d in "0123456789"},
    **{f"KEY_{c}": c for c in "ABCDEF"},
}
_ENTER_KEYS: Final = frozenset({"KEY_ENTER", "KEY_KPENTER"})


class UidAssembler:
    """Collects key presses into a UID; Enter completes it. Pure logic, so it is unit-testable."""

    def __init__(self, max_gap_s: float = MAX_KEY_GAP_S) -> None:
        self._buffer: list[str] = []
        self._last_key_at = 0.0
        self._max_gap_s = max_gap_s

    def feed(self, key_name: str, now: float | None = None) -> str | None:
        """Feed one key-down; returns the completed UID on Enter, else None."""
        now = time.monotonic() if now is None else now
        if self._buffer and now - self._last_key_at > self._max_gap_s:
            self._buffer.clear()  # a stale partial read: start over
        self._last_key_at = now
        if key_name in _ENTER_KEYS:
            uid = "".join(self._buffer)
            self._buffer.clear()
            return uid or None
        char = _KEY_CHARS.get(key_name)
        if char is None:
            return None
        if len(self._buffer) >= MAX_UID_LENGTH:
            self._buffer.clear()  # noise; the next Enter yields nothing valid
            return None
        self._buffer.append(char)
        return None


class EvdevRFIDReader(RFIDReader):
    """A USB keyboard-wedge reader read through evdev on a background thread."""

    def __init__(self, device_path: str, *, grab: bool = True) -> None:
        super().__init__()
        self.device_path = device_path
        self.grab = grab
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def available() -> bool:
        """True when the evdev module can be imported here."""
        try:
            import evdev  # noqa: F401
        except ImportError:
            return False
        return True

    def start(self) -> None:
        """Start the reading thread (returns at once; a missing device is retried)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rfid-reader", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread within about POLL_INTERVAL_S and release the device."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=POLL_INTERVAL_S * 8)
            self._thread = None

    def _open(self) -> Any:
        import evdev

        device = evdev.InputDevice(self.device_path)
        if self.grab:
            try:
                device.grab()  # keep the UID's keystrokes away from the kiosk's widgets
            except OSError:
                logger.warning("RFID: could not grab %s; reading shared", self.device_path)
        logger.info("RFID reader open: %s (%s)", self.device_path, device.name)
        return device

    def _run(self) -> None:
        try:
            import evdev
        except ImportError:
            logger.error("RFID: python-evdev is not installed; no card reader")
            return
        while not self._stop.is_set():
            try:
                device = self._open()
            except OSError as err:
                logger.warning("RFID: cannot open %s (%s); retrying", self.device_path, err)
                self._stop.wait(REOPEN_INTERVAL_S)
                continue
            try:
                self._read_until_stopped(device, evdev)
            except OSError as err:
                logger.warning("RFID: %s went away (%s); reopening", self.device_path, err)
            finally:
                with contextlib.suppress(OSError):
                    device.close()
            self._stop.wait(REOPEN_INTERVAL_S)

    def _read_until_stopped(self, device: Any, evdev: Any) -> None:
        assembler = UidAssembler()
        while not self._stop.is_set():
            ready, _, _ = select.select([device.fd], [], [], POLL_INTERVAL_S)
            if not ready:
                continue
            for event in device.read():
                if event.type != evdev.ecodes.EV_KEY or event.value != 1:  # key-down only
                    continue
                name = evdev.ecodes.KEY.get(event.code)
                if isinstance(name, list):
                    name = name[0]
                if not isinstance(name, str):
                    continue
                uid = assembler.feed(name)
                if uid is not None:
                    self._emit(uid)


def create_reader(device_path: str | None) -> RFIDReader:
    """An evdev reader for ``device_path`` when evdev is present, else a simulated reader."""
    if device_path and EvdevRFIDReader.available():
        return EvdevRFIDReader(device_path)
    if device_path:
        logger.error("RFID device %s configured but evdev is unavailable", device_path)
    return SimulatedRFIDReader()
