"""What the kiosk window needs from the machine, checked before Qt starts.

Qt aborts the whole process (SIGABRT) when its platform plugin cannot start: with no
display at all (an SSH session, a server, CI), or on X11 when a system library of
the xcb plugin is missing (Qt names only ``libxcb-cursor0``; ``ldd`` shows the rest).
Nothing can be cleaned up after that abort, so the commands ask here first and say
what to do in one line.

This module loads no Qt: it reads the environment and runs ``ldd`` on the plugin file.

``python -m central_system.services.display --ensure`` (run by ``scripts/consultease``
before a window command) installs missing xcb libraries with apt-get when it runs as
root, and otherwise prints the exact ``sudo apt-get install`` line.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

logger = logging.getLogger(__name__)

# Qt platforms that draw without a display server (no DISPLAY / WAYLAND_DISPLAY needed).
SERVERLESS_PLATFORMS: Final = frozenset(
    {"offscreen", "minimal", "minimalegl", "eglfs", "linuxfb", "vnc", "vkkhrdisplay"}
)
LDD_TIMEOUT_S: Final = 20.0
APT_TIMEOUT_S: Final = 600.0
# Sonames whose Debian package is not the usual "lib<name><version>" spelling.
_PACKAGE_OVERRIDES: Final = {
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
}
_LDD_LINE = re.compile(r"^\s*(\S+)\s+=>\s+(not found|\S+)")


def qt_platform(environ: Mapping[str, str]) -> str:
    """The Qt platform plugin a window would use: ``QT_QPA_PLATFORM`` or Qt's own choice."""
    configured = environ.get("QT_QPA_PLATFORM", "").strip()
    if configured:
        # "xcb;wayland", "offscreen:size=…": the first candidate, without its options.
        return configured.split(";")[0].split(":")[0].strip().lower()
    if environ.get("WAYLAND_DISPLAY") and environ.get("XDG_SESSION_TYPE") == "wayland":
        return "wayland"
    return (
        "xcb" if environ.get("DISPLAY") else ("wayland" if environ.get("WAYLAND_DISPLAY") else "")
    )


def display_problem(environ: Mapping[str, str]) -> str | None:
    """Why no window can open here (one sentence), or None when a display is there."""
    platform = qt_platform(environ)
    if platform in SERVERLESS_PLATFORMS:
        return None
    if platform == "xcb" and not environ.get("DISPLAY"):
        return "no X11 display: QT_QPA_PLATFORM is xcb but DISPLAY is not set"
    if platform == "wayland" and not environ.get("WAYLAND_DISPLAY"):
        return "no Wayland display: QT_QPA_PLATFORM is wayland but WAYLAND_DISPLAY is not set"
    if not platform:
        return "no display: neither DISPLAY nor WAYLAND_DISPLAY is set (an SSH session, a server or CI)"
    return None


def xcb_plugin_path() -> Path | None:
    """PySide6's xcb platform plugin (found without importing Qt), or None."""
    spec = importlib.util.find_spec("PySide6")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        plugin = Path(location) / "Qt" / "plugins" / "platforms" / "libqxcb.so"
        if plugin.is_file():
            return plugin
    return None


def _ldd(binary: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """``soname -> path`` (or ``"not found"``) for every library ``binary`` loads, transitively."""
    ldd = shutil.which("ldd")
    if ldd is None:
        return {}
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [ldd, str(binary)],
            env={**environ, "LC_ALL": "C"},
            capture_output=True,
            text=True,
            timeout=LDD_TIMEOUT_S,
            check=False,
        ).stdout
    except (OSError, subprocess.TimeoutExpired) as err:
        logger.debug("ldd %s failed: %s", binary, err)
        return {}
    found: dict[str, str] = {}
    for line in out.splitlines():
        match = _LDD_LINE.match(line)
        if match:
            found.setdefault(match.group(1), match.group(2))
    return found


def missing_libraries(
    plugin: Path,
    *,
    library_path: Sequence[Path] | None = None,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The sonames ``plugin`` needs that the machine lacks, sorted.

    By default this is ``ldd``'s "not found". With ``library_path`` a library counts as
    present only in those directories (or among the libraries PySide6 ships itself):
    this answers "what if the system had only these", which is how the check is tested
    with one library hidden.
    """
    resolved = _ldd(plugin, environ if environ is not None else os.environ)
    if library_path is None:
        return sorted(name for name, where in resolved.items() if where == "not found")
    bundled = plugin.parents[2] / "lib"  # PySide6/Qt/lib
    dirs = [bundled, *library_path]
    return sorted(name for name in resolved if not any((d / name).exists() for d in dirs))


def debian_package(soname: str) -> str:
    """The Debian package that ships ``soname`` (``libxcb-icccm.so.4`` -> ``libxcb-icccm4``)."""
    if soname in _PACKAGE_OVERRIDES:
        return _PACKAGE_OVERRIDES[soname]
    stem, _so, version = soname.partition(".so.")
    version = version.split(".")[0]
    name = stem.lower()
    # Debian policy 8.1: a hyphen separates a name that ends in a digit from the version.
    return f"{name}-{version}" if name[-1:].isdigit() else f"{name}{version}"


def apt_install_argv(packages: Sequence[str], *, as_root: bool) -> list[str]:
    """The exact install command (with sudo when not root)."""
    argv = ["apt-get", "install", "-y", *packages]
    return argv if as_root else ["sudo", *argv]


def xcb_library_problem(
    environ: Mapping[str, str] | None = None,
    *,
    library_path: Sequence[Path] | None = None,
    plugin: Path | None = None,
) -> str | None:
    """When the window would use xcb and a library of the plugin is missing: what and how to install."""
    env = environ if environ is not None else os.environ
    if qt_platform(env) != "xcb":
        return None
    plugin = plugin or xcb_plugin_path()
    if plugin is None:
        return None
    missing = missing_libraries(plugin, library_path=library_path, environ=env)
    return _missing_libraries_line(missing) if missing else None


def _missing_libraries_line(missing: Sequence[str]) -> str:
    packages = sorted({debian_package(name) for name in missing})
    command = " ".join(apt_install_argv(packages, as_root=os.geteuid() == 0))
    return (
        f"Qt's X11 (xcb) plugin needs system libraries that are missing ({', '.join(missing)}); "
        f"install them with: {command}"
    )


def window_problem(environ: Mapping[str, str] | None = None) -> str | None:
    """Why a kiosk window cannot open here, in one line; None when it can."""
    env = environ if environ is not None else os.environ
    return display_problem(env) or xcb_library_problem(env)


def ensure_xcb_libraries(environ: Mapping[str, str] | None = None) -> int:
    """Install the xcb plugin's missing libraries where possible (root with apt-get), else print the line.

    Returns 0 when nothing is missing or the install worked, 1 otherwise. Never fatal
    for the caller: the demo falls back to its headless scenario.
    """
    env = environ if environ is not None else os.environ
    if display_problem(env) is not None or qt_platform(env) != "xcb":
        return 0
    plugin = xcb_plugin_path()
    if plugin is None:
        return 0
    missing = missing_libraries(plugin, environ=env)
    if not missing:
        return 0
    packages = sorted({debian_package(name) for name in missing})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(_missing_libraries_line(missing), file=sys.stderr)
        return 1
    print(f"installing the window's system libraries: {' '.join(packages)}", file=sys.stderr)
    quiet_env = {**env, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], apt_install_argv(packages, as_root=True)):
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv, no shell
                argv, env=quiet_env, timeout=APT_TIMEOUT_S, check=False, stdout=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired) as err:
            print(f"{' '.join(argv)} failed: {err}", file=sys.stderr)
            return 1
        if done.returncode != 0:
            print(f"{' '.join(argv)} failed (exit {done.returncode})", file=sys.stderr)
            return 1
    return 0 if not missing_libraries(plugin, environ=env) else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``--ensure``: install or name the missing libraries; without it: print the problem, if any."""
    parser = argparse.ArgumentParser(prog="python -m central_system.services.display")
    parser.add_argument(
        "--ensure", action="store_true", help="install missing xcb libraries as root"
    )
    args = parser.parse_args(argv)
    if args.ensure:
        return ensure_xcb_libraries()
    problem = window_problem()
    if problem:
        print(problem)
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main())
