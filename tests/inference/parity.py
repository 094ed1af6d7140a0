"""The parity environment of the inference image (``.venv-toolkit``): where it is and what it pins."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.inference.payloads import LIMITS_ENV

ROOT = Path(__file__).resolve().parents[2]
TOOLKIT_VENV = ROOT / ".venv-toolkit"
TOOLKIT_PYTHON = TOOLKIT_VENV / "bin" / "python"
TOOLKIT_REQUIREMENTS = Path(__file__).with_name("requirements-toolkit.txt")
SERVING_REQUIREMENTS = ROOT / "serving" / "requirements.txt"
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)\s*(?:#.*)?$")


def toolkit_python() -> Path:
    """The parity environment's interpreter; fails (never skips) the test when it was not built."""
    if not TOOLKIT_PYTHON.exists():
        pytest.fail(
            f"{TOOLKIT_PYTHON.relative_to(ROOT)} is missing: run `make install` (or `make toolkit-venv`)"
        )
    return TOOLKIT_PYTHON


def handler_env(**extra: str) -> dict[str, str]:
    """The environment the toolkit's worker gets: the handler's limits, SAGEMAKER_PROGRAM, no PYTHONPATH."""
    env = os.environ | LIMITS_ENV | {"SAGEMAKER_PROGRAM": "inference.py"} | extra
    env.pop("PYTHONPATH", None)  # the toolkit finds the handler through <model_dir>/code alone
    return env


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_lines(path: Path) -> list[str]:
    """The requirement lines of a requirements file, without comments, blanks and ``-r`` includes."""
    lines = (line.split(" #", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith(("#", "-"))]


def pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of a requirements file; fails on any line that is not ``name==version``."""
    found = {}
    for line in requirement_lines(path):
        match = _PIN.match(line)
        if not match:
            pytest.fail(f"{path}: {line!r} is not an exact pin (name==version)")
        found[canonical(match.group(1))] = match.group(2)
    return found


DRIVER = Path(__file__).with_name("toolkit_driver.py")


def drive_toolkit(model_dir: Path, cases: list[dict], work: Path, **env: str) -> dict[str, dict]:
    """Runs ``toolkit_driver.py`` in the parity environment: ``{name: {"status", "content_type", "body"}}``.

    ``cases`` are ``{"name", "body_b64", "headers"}``; ``env`` adds to :func:`handler_env`.
    """
    cases_file = work / "cases.json"
    cases_file.write_text(json.dumps(cases))
    result = subprocess.run(
        [str(toolkit_python()), str(DRIVER), str(model_dir), str(cases_file)],
        env=handler_env(**env),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    answers = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return {answer["name"]: answer for answer in answers}


def driver_case(name: str, body: bytes, headers: dict[str, str]) -> dict:
    """One request for :func:`drive_toolkit`."""
    return {"name": name, "body_b64": base64.b64encode(body).decode(), "headers": headers}
