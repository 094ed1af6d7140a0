"""What a test session wrote into the repository: the tree at session start against the tree at its end.

Tests write under ``tmp_path``, never into the repository. The guard snapshots the tree (path, mtime,
size and a digest of every file, build outputs and environments left out) when the session starts and
compares when it ends. Several people and tools may edit the same working tree while a session runs, so
by default only what nobody writes by hand fails the session: new bytecode (``__pycache__``, ``*.pyc``)
and new files git ignores (build outputs). Files created, edited, touched or removed otherwise are listed
in the summary. ``ACOUSTIC_TREE_GUARD=strict`` (CI: a clean clone that nothing else edits) fails on those
too; ``ACOUSTIC_TREE_GUARD=off`` turns the guard off.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = "ACOUSTIC_TREE_GUARD"
# Never compared: version control, environments, caches and build outputs that tools own.
SKIPPED_DIRS = frozenset(
    {".git", "node_modules", "cdk.out", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"}
)
SKIPPED_TOP_DIRS = frozenset({"build"})
BYTECODE_SUFFIXES = (".pyc", ".pyo")


@dataclass(frozen=True)
class Entry:
    mtime_ns: int
    size: int
    digest: str


@dataclass
class Changes:
    """``written``: what only a program writes (fails the session); ``other``: what a person may have done."""

    written: list[str] = field(default_factory=list)
    other: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.written or self.other)


def _skipped(relative: Path) -> bool:
    name = relative.name
    if name in SKIPPED_DIRS or name.startswith(".venv"):
        return True
    return len(relative.parts) == 1 and name in SKIPPED_TOP_DIRS


def _digest(path: Path) -> str:
    if path.is_symlink():
        return "link:" + os.readlink(path)
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def snapshot(root: Path = ROOT, *, skip: Iterable[str] = ()) -> dict[str, Entry]:
    """``{posix path relative to root: Entry}`` of every file, skipped folders and ``skip`` prefixes left out."""
    prefixes = tuple(skip)
    files: dict[str, Entry] = {}
    for directory, dirnames, filenames in os.walk(root):
        here = Path(directory).relative_to(root)
        dirnames[:] = sorted(d for d in dirnames if not _skipped(here / d))
        for name in filenames:
            relative = (here / name).as_posix()
            if prefixes and relative.startswith(prefixes):
                continue
            path = Path(directory, name)
            try:  # a file may vanish or change while the tree is walked: someone is editing
                stat = path.lstat()
                files[relative] = Entry(stat.st_mtime_ns, stat.st_size, _digest(path))
            except OSError:
                continue
    return files


def is_bytecode(relative: str) -> bool:
    return "__pycache__" in relative.split("/") or relative.endswith(BYTECODE_SUFFIXES)


def git_ignored(root: Path, paths: list[str]) -> set[str]:
    """The paths that git ignores; none when git is unavailable or this is not a checkout."""
    if not paths:
        return set()
    try:
        result = subprocess.run(
            ["git", "-C", str(root), "check-ignore", "--no-index", "-z", "--stdin"],
            input="\0".join(paths) + "\0",
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    if result.returncode not in (0, 1):  # 1: none ignored; 128: not a repository
        return set()
    return {path for path in result.stdout.split("\0") if path}


def compare(before: dict[str, Entry], after: dict[str, Entry], root: Path = ROOT) -> Changes:
    """What changed between two snapshots, split into what only a program writes and the rest."""
    changes = Changes()
    new = sorted(set(after) - set(before))
    generated = {path for path in new if is_bytecode(path)}
    generated |= git_ignored(root, [path for path in new if path not in generated])
    for path in new:
        (changes.written if path in generated else changes.other).append(f"created {path}")
    for path in sorted(set(before) & set(after)):
        old, now = before[path], after[path]
        if old.digest != now.digest:
            changes.other.append(f"edited {path}")
        elif (old.mtime_ns, old.size) != (now.mtime_ns, now.size):
            changes.other.append(f"touched {path} (same content, new mtime)")
    changes.other.extend(f"removed {path}" for path in sorted(set(before) - set(after)))
    return changes


def mode() -> str:
    """``default``, ``strict`` or ``off``, from ``ACOUSTIC_TREE_GUARD``."""
    value = os.environ.get(ENV, "").strip().lower() or "default"
    if value not in ("default", "strict", "off"):
        raise ValueError(f"{ENV}={value!r}: expected default, strict or off")
    return value
