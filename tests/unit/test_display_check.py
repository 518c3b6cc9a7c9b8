"""The window checks that run before Qt starts: a display, and the xcb plugin's system libraries."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from central_system.services import display


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        ({}, "no display"),
        ({"QT_QPA_PLATFORM": "xcb"}, "DISPLAY is not set"),
        ({"QT_QPA_PLATFORM": "wayland"}, "WAYLAND_DISPLAY is not set"),
        ({"DISPLAY": ":0"}, None),
        ({"WAYLAND_DISPLAY": "wayland-0"}, None),
        ({"QT_QPA_PLATFORM": "offscreen"}, None),
        ({"QT_QPA_PLATFORM": "eglfs"}, None),  # the Raspberry Pi kiosk: no display server
        ({"QT_QPA_PLATFORM": "offscreen:size=1024x600"}, None),
        ({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":1"}, None),
    ],
)
def test_display_problem_is_found_before_qt_starts(
    environ: dict[str, str], problem: str | None
) -> None:
    found = display.display_problem(environ)
    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.mark.parametrize(
    ("soname", "package"),
    [
        ("libxcb-cursor.so.0", "libxcb-cursor0"),
        ("libxcb-icccm.so.4", "libxcb-icccm4"),
        ("libxcb-keysyms.so.1", "libxcb-keysyms1"),
        ("libxkbcommon-x11.so.0", "libxkbcommon-x11-0"),
        ("libX11-xcb.so.1", "libx11-xcb1"),
        ("libdbus-1.so.3", "libdbus-1-3"),
    ],
)
def test_debian_package_of_a_soname(soname: str, package: str) -> None:
    assert display.debian_package(soname) == package


@pytest.fixture
def plugin() -> Path:
    found = display.xcb_plugin_path()
    if found is None:
        pytest.skip("PySide6 ships no xcb plugin here")
    return found


def test_a_hidden_xcb_library_is_named_with_its_apt_get_line(plugin: Path, tmp_path: Path) -> None:
    """Only the directory given holds the system's libraries, minus one: that one is reported."""
    resolved = display._ldd(plugin, os.environ)
    present = {name: path for name, path in resolved.items() if path != "not found"}
    already_missing = {name for name, path in resolved.items() if path == "not found"}
    xcb_present = sorted(n for n in present if n.startswith("libxcb"))
    if not xcb_present:
        pytest.skip("no xcb library is installed here to hide")
    hidden = "libxcb-cursor.so.0" if "libxcb-cursor.so.0" in present else xcb_present[0]
    libdir = tmp_path / "lib"
    libdir.mkdir()
    for name, path in present.items():
        if name != hidden:
            (libdir / name).symlink_to(path)

    missing = display.missing_libraries(plugin, library_path=[libdir])
    assert missing == sorted({hidden} | already_missing)

    environ = {"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}
    problem = display.xcb_library_problem(environ, library_path=[libdir], plugin=plugin)
    assert problem is not None and hidden in problem
    apt_line = problem.split("install them with: ", 1)[1]
    packages = sorted(display.debian_package(n) for n in {hidden} | already_missing)
    expected = display.apt_install_argv(packages, as_root=os.geteuid() == 0)
    assert apt_line == " ".join(expected)

    # Nothing hidden: only what the machine really lacks (ldd's own answer) is named.
    (libdir / hidden).symlink_to(present[hidden])
    assert display.missing_libraries(plugin, library_path=[libdir]) == sorted(already_missing)
    assert display.missing_libraries(plugin) == sorted(already_missing)


def test_no_library_check_when_the_window_does_not_use_xcb(plugin: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for environ in ({"QT_QPA_PLATFORM": "offscreen"}, {"QT_QPA_PLATFORM": "eglfs"}, {}):
        assert display.xcb_library_problem(environ, library_path=[empty], plugin=plugin) is None
    # ... and with xcb every system library is missing from an empty directory.
    problem = display.xcb_library_problem(
        {"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, library_path=[empty], plugin=plugin
    )
    assert problem is not None and "libxcb.so.1" in problem and "libxcb1" in problem
