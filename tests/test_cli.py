"""The operator commands: one installed entry point with subcommands, from any directory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tools import cli

ROOT = Path(__file__).resolve().parents[1]
# `make install` installs the project into .venv (editable), which puts this console script beside python.
SCRIPT = Path(sys.executable).with_name("acoustic-shield")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: run `make install` (it installs the project, editable)"
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_command_lists_every_tool_with_an_example_from_any_directory(tmp_path: Path) -> None:
    # Given a directory outside the repository
    # When the command's help is asked for there
    result = run("--help", cwd=tmp_path)
    # Then it runs, and names every subcommand with what it does and an example
    assert result.returncode == 0, result.stderr
    for name in cli.COMMANDS:
        assert re.search(rf"^  {name} +\S", result.stdout, flags=re.M), name
        assert f"acoustic-shield {name} " in result.stdout


@pytest.mark.parametrize("name", ["stage", "job", "batch", "invoke"])
def test_each_tool_answers_its_own_help_outside_the_repository(tmp_path: Path, name: str) -> None:
    # Given a directory outside the repository / When a tool's help is asked for through the command
    result = run(name, "--help", cwd=tmp_path)
    # Then the tool's own parser answers (no "No module named ...": the project is installed)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: ") and "No module named" not in result.stderr


def test_a_misspelt_command_is_one_line_with_the_nearest_one(tmp_path: Path) -> None:
    # Given a typo / When it is run
    result = run("stge", "esc50", cwd=tmp_path)
    # Then one line on stderr names the nearest command and the choices, and the status is 2
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "acoustic-shield: unknown command 'stge'; did you mean 'stage'? choose one of "
        + ", ".join(cli.COMMANDS)
    ]


def test_verify_is_invoke_with_its_verification_on(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given the invoke tool's entry point, recorded
    seen: list[list[str]] = []
    monkeypatch.setattr("tools.invoke.main", lambda argv: seen.append(argv) or 0)
    # When `verify` runs / Then invoke runs with --verify first, the rest as given
    assert cli.main(["verify", "--endpoint", "e"]) == 0
    assert seen == [["--verify", "--endpoint", "e"]]


def test_no_command_prints_the_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    # Given no arguments / When the command runs / Then it shows what it can do, with status 2
    assert cli.main([]) == 2
    assert "usage: acoustic-shield <command>" in capsys.readouterr().out
