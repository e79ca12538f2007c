"""The CLI's contract, checked for every registered command and every documented command line.

Walks the click tree of `tipjar`: every command's help carries an Example, every command
that prints data takes `--json`, and a usage error exits 2 with a one-line reason on
stderr. Then every `tipjar ...` line in the code blocks of README.md and
docs/OPERATIONS.md must name a real command with real options, so renaming a command or an
option without fixing the documentation fails here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from bot.cli import main

ROOT = Path(__file__).resolve().parents[2]
DOCS = (ROOT / "README.md", ROOT / "docs" / "OPERATIONS.md")

# Commands that print no data a script would read: they run something or tell a story.
NOT_DATA = {
    "db upgrade": "prints one line saying which schema the database is at",
    "worker": "a long-running process; it logs",
    "web": "a server; it logs",
    "demo": "a narrated story for people",
}
# Known gaps, reported to their owners: each must become a pass (strict xfail).
MISSING_JSON: dict[str, str] = {}


def leaves(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += leaves(command, (*path, name))
        else:
            found.append((*path, name))
    return found


LEAVES = leaves(main)
IDS = [" ".join(p) for p in LEAVES]


def command_at(path: tuple[str, ...] | list[str]) -> click.Command | None:
    command: click.Command = main
    for name in path:
        if not isinstance(command, click.Group) or name not in command.commands:
            return None
        command = command.commands[name]
    return command


def run(*args: str) -> click.testing.Result:
    return CliRunner().invoke(main, list(args), prog_name="tipjar")


def test_the_tree_has_every_command_of_the_design() -> None:
    for expected in (
        "db upgrade",
        "check-config",
        "worker",
        "web",
        "demo",
        "poll",
        "notices send",
        "notices list",
        "expire",
        "settle",
        "funds deposit",
        "accounts show",
        "accounts set-budget",
        "escrow balances",
        "escrow show",
        "audit",
    ):
        assert expected in IDS


@pytest.mark.parametrize("path", LEAVES, ids=IDS)
def test_every_command_has_help_with_an_example(path: tuple[str, ...]) -> None:
    result = run(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example" in result.output
    assert f"tipjar {' '.join(path)}" in result.output.split("Example", 1)[1]


DATA_COMMANDS = [
    pytest.param(
        path,
        id=name,
        marks=[pytest.mark.xfail(strict=True, reason=MISSING_JSON[name])]
        if name in MISSING_JSON
        else [],
    )
    for path, name in zip(LEAVES, IDS, strict=True)
    if name not in NOT_DATA
]


def test_the_exemptions_name_real_commands() -> None:
    assert set(NOT_DATA) | set(MISSING_JSON) <= set(IDS)


@pytest.mark.parametrize("path", DATA_COMMANDS)
def test_every_command_that_prints_data_takes_json(path: tuple[str, ...]) -> None:
    command = command_at(path)
    assert command is not None
    options = {opt for param in command.params for opt in getattr(param, "opts", [])}
    assert "--json" in options


@pytest.mark.parametrize("path", LEAVES, ids=IDS)
def test_a_usage_error_exits_2_with_one_line_on_stderr(path: tuple[str, ...]) -> None:
    result = run(*path, "--no-such-option")
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tipjar: ") and "--no-such-option" in lines[0]


def test_an_unknown_command_exits_2_with_one_line_on_stderr() -> None:
    result = run("no-such-command")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no-such-command" in result.stderr


def test_the_installed_script_keeps_usage_errors_to_one_line(tmp_path: Path) -> None:
    script = Path(sys.executable).with_name("tipjar")
    command = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "import sys; from bot.cli import main; sys.exit(main())"]
    )
    done = subprocess.run(
        [*command, "settle"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        "tipjar: Missing option '--period'. (see 'tipjar settle --help')"
    ]


# --------------------------------------------------------------------------- documentation


def code_blocks(text: str) -> list[str]:
    return re.findall(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", text, flags=re.M | re.S)


# `tipjar ...`, `.venv/bin/tipjar ...`, after `VAR=value` assignments.
COMMAND_LINE = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:\S*/)?tipjar(?:\s|$)")


def documented_command_lines() -> list[tuple[str, str]]:
    """(file name, command line) for every `tipjar ...` line in the docs' code blocks."""
    found: list[tuple[str, str]] = []
    for doc in DOCS:
        for block in code_blocks(doc.read_text(encoding="utf-8")):
            for raw in block.splitlines():
                line = raw.split(" #", 1)[0].strip().removeprefix("$ ")
                if COMMAND_LINE.match(line):
                    found.append((doc.name, line))
    return found


DOCUMENTED = documented_command_lines()


def split_command(line: str) -> tuple[list[str], list[str]]:
    """The command words after `tipjar` and the options the line uses."""
    words = shlex.split(line)
    words = next(words[i + 1 :] for i, w in enumerate(words) if Path(w).name == "tipjar")
    path: list[str] = []
    command: click.Command = main
    for word in words:
        if isinstance(command, click.Group) and word in command.commands:
            path.append(word)
            command = command.commands[word]
        else:
            break
    if isinstance(command, click.Group) and len(words) > len(path):
        path.append(words[len(path)])  # an unknown word where a command belongs
    options = [w.split("=", 1)[0] for w in words if w.startswith("-")]
    return path, options


def test_the_docs_show_commands() -> None:
    assert all(doc.exists() for doc in DOCS)
    assert len(DOCUMENTED) >= 20


@pytest.mark.parametrize("doc,line", DOCUMENTED, ids=[f"{d}: {c}" for d, c in DOCUMENTED])
def test_every_documented_command_works_as_written(doc: str, line: str) -> None:
    path, options = split_command(line)
    result = run(*path, "--help")
    assert result.exit_code == 0, f"{doc}: `{line}`: {result.stderr or result.output}"
    command = command_at(path)
    assert command is not None, f"{doc}: `{line}` names no command"
    known = {opt for param in command.params for opt in getattr(param, "opts", [])}
    known |= {"-h", "--help", "--version"}
    for option in options:
        assert option in known, f"{doc}: `{line}`: {option} is not an option of {path}"


def test_the_readme_shows_every_command() -> None:
    readme = ROOT / "README.md"
    shown = {" ".join(split_command(c)[0]) for d, c in DOCUMENTED if d == readme.name}
    missing = sorted(set(IDS) - shown)
    assert missing == [], f"README.md shows no example of: {missing}"
