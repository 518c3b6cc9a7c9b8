"""What a newcomer reads: the README's commands run as written, and ``--help`` says what ``desk`` does."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from central_system.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _subcommands() -> set[str]:
    parser = build_parser()
    (action,) = [a for a in parser._actions if a.dest == "command"]
    return set(action.choices)  # type: ignore[arg-type]


def test_the_readme_gives_exactly_two_commands_for_a_newcomer() -> None:
    section = README.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    commands = [
        line.split("#")[0].strip()
        for line in section.splitlines()
        if line.startswith("    ") and line.strip() and not line.strip().startswith("#")
    ]
    assert commands == ["scripts/consultease demo", "scripts/test"]


def test_every_command_in_the_readme_is_written_as_it_runs() -> None:
    """`consultease` is not on PATH after the two commands: the README writes scripts/consultease."""
    bare = re.findall(r"(?<![/\w-])consultease (\w[\w-]*)", README.replace("`", " "))
    assert bare == [], f"commands written without scripts/: {bare}"
    named = re.findall(r"scripts/consultease ([a-z][\w-]*)", README)
    assert named, "the README names no command"
    assert set(named) <= _subcommands()


def test_the_readmes_list_of_other_commands_exists() -> None:
    other = README.split("Every other command runs the same way", 1)[1].split("\n\n", 1)[0]
    listed = {m.split()[0] for m in re.findall(r"`([a-z][\w-]*(?: [\w|-]+)?)", other)}
    assert listed - {"scripts", "import"} <= _subcommands()  # "import|export": faculty sub-commands
    assert {"faculty", "students"} <= listed


def test_help_says_what_desk_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "contract section" not in out
    assert "desk give a faculty member's desk unit its own broker login" in out
