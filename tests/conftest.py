"""Shared test set-up: offline, no AWS account, quiet jsii, nothing written into the repository."""

from __future__ import annotations

import os
import sys

import pytest

from tests import tree_guard

# Tests never reach AWS or the Hugging Face Hub; these keep any stray client local and fast.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "18,20")
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

# Nothing a test runs writes bytecode into the tree: this process does not (tests/__init__.py), nor do the
# interpreters it starts (train.py in the unpacked source dir, python -m tools.serve, the toolkits' Pythons).
os.environ["PYTHONDONTWRITEBYTECODE"] = "1"

_TREE = pytest.StashKey[dict[str, tree_guard.Entry]]()
_CHANGES = pytest.StashKey[tree_guard.Changes]()


def _tree_skip() -> tuple[str, ...]:
    """What the session may write on purpose: ``make snapshots`` refreshes the reviewed templates."""
    return ("tests/infra/snapshots/",) if os.environ.get("UPDATE_SNAPSHOTS") == "1" else ()


def pytest_sessionstart(session: pytest.Session) -> None:
    if tree_guard.mode() != "off" and not hasattr(session.config, "workerinput"):
        session.config.stash[_TREE] = tree_guard.snapshot(skip=_tree_skip())


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fails the session when it left bytecode or build outputs in the tree (see tests/tree_guard.py)."""
    before = session.config.stash.get(_TREE, None)
    if before is None:
        return
    changes = tree_guard.compare(before, tree_guard.snapshot(skip=_tree_skip()))
    session.config.stash[_CHANGES] = changes
    failing = changes.written or (changes.other and tree_guard.mode() == "strict")
    if failing and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    changes = config.stash.get(_CHANGES, None)
    if not changes:
        return
    strict = tree_guard.mode() == "strict"
    sections = (
        (changes.written, "the tests wrote into the repository (tests write under tmp_path only)", True),
        (
            changes.other,
            "changed in the repository during the session"
            + ("" if strict else " (by a test, or by someone editing at the same time?)"),
            strict,
        ),
    )
    for lines, title, fails in sections:
        if not lines:
            continue
        terminalreporter.write_sep("=", title, red=fails, yellow=not fails)
        for line in lines[:50]:
            terminalreporter.write_line(f"  {line}")
        if len(lines) > 50:
            terminalreporter.write_line(f"  ... and {len(lines) - 50} more")


@pytest.fixture(autouse=True)
def _fresh_handler_settings():
    """Each test's handler reads its settings from the environment as a new worker would: the handler's
    cached settings (read once per worker) are dropped before and after every test."""
    handler = sys.modules.get("serving.inference")
    if handler is not None:
        handler.current_settings.cache_clear()
    yield
    handler = sys.modules.get("serving.inference")
    if handler is not None:
        handler.current_settings.cache_clear()
