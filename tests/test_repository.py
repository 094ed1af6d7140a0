"""The repository's own rules: what may import what, and the guard that keeps tests from writing into the tree."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import pytest

from tests import tree_guard

ROOT = Path(__file__).resolve().parents[1]
# Code that runs without the test suite: each runtime's folder, the infrastructure, the operator commands
# (tools/), what people run (benchmarks/, scripts/) and what they share with the tests (standins/). None of it
# may need tests/ or pytest.
OUTSIDE_TESTS = (
    "app.py",
    "benchmarks",
    "common",
    "infra",
    "lambdas",
    "scripts",
    "serving",
    "staging",
    "standins",
    "tasks",
    "tools",
    "training",
)
TEST_ONLY = ("tests", "pytest", "_pytest")
FIRST_PARTY = ("app", "benchmarks", "common", "infra", "lambdas", "scripts", "serving", "staging", "standins")
FIRST_PARTY += ("tasks", "tests", "tools", "training")
# What each runtime's folder may import of the repository: its own modules, the contracts at the bottom, the
# tasks (training and serving), and (training) the serving code it ships onward. The infrastructure reads the contracts and the tasks' facts, never a Lambda's
# internals; nothing that ships imports the operator commands.
MAY_IMPORT = {
    "common": ("common",),
    "tasks": ("common", "tasks"),
    "serving": ("common", "serving", "tasks"),
    "training": ("common", "serving", "tasks", "training"),
    "staging": ("common", "staging"),
    "lambdas": ("common", "lambdas"),
    "infra": ("common", "infra", "tasks"),
}


def python_files(top: str) -> list[Path]:
    path = ROOT / top
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def imports(source: str, relative: Path) -> list[tuple[int, str]]:
    """``(line, module)`` of every import in a module's source, relative ones resolved, dynamic ones by literal."""
    package = list(relative.parent.parts)
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename=str(relative))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.append((node.lineno, ".".join([*base, *([node.module] if node.module else [])])))
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if name in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                found.append((node.lineno, node.args[0].value))
    return sorted(found)


def violations(files: list[Path], forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imports(path.read_text(), path.relative_to(ROOT))
        if module.split(".")[0] in forbidden
    ]


@pytest.mark.parametrize("top", OUTSIDE_TESTS)
def test_nothing_outside_the_tests_imports_from_them(top: str) -> None:
    # Given the Python files of a part of the repository that runs without the test suite
    files = python_files(top)
    assert files, f"{top} has no Python files: update OUTSIDE_TESTS"
    # When their imports are read (parsed, so that a comment or a string saying "tests" is no import)
    # Then none is from tests/ or pytest: what they share with the tests lives in standins/
    assert violations(files, TEST_ONLY) == []


@pytest.mark.parametrize("runtime", sorted(MAY_IMPORT))
def test_each_runtime_imports_only_what_it_may(runtime: str) -> None:
    # Given a runtime's folder (shipped in its own bundle, or the infrastructure)
    files = python_files(runtime)
    # When its imports are read
    forbidden = tuple(name for name in FIRST_PARTY if name not in MAY_IMPORT[runtime])
    # Then each is its own, one it may use, or a library's
    assert violations(files, forbidden) == []


def test_the_runtime_rule_fails_on_an_upward_import(tmp_path: Path) -> None:
    # Given the infrastructure importing a Lambda's internals (what the rule exists to stop)
    source = "from lambdas.launcher import logic\nfrom common import contract\n"
    found = imports(source, Path("infra/training/launcher.py"))
    # When the infrastructure's rule is applied
    forbidden = tuple(name for name in FIRST_PARTY if name not in MAY_IMPORT["infra"])
    # Then the Lambda import is the one it names
    assert [module for _, module in found if module.split(".")[0] in forbidden] == ["lambdas.launcher"]


def test_the_import_reader_sees_every_form_of_import() -> None:
    # Given a module with every way of importing tests/, a comment and a string that only mention it
    source = (
        "import tests\nimport os, tests.inference.payloads as p\nfrom tests.training import x\n"
        "from . import tests\nfrom .. import y\nimport importlib\nimportlib.import_module('tests.z')\n"
        "__import__('tests')\n# import tests\ntext = 'from tests import nothing'\n"
    )
    # When its imports are read, as benchmarks/sub/module.py
    found = imports(source, Path("benchmarks/sub/module.py"))
    # Then each import is found on its line, relative ones inside their package; the comment and the string not
    assert found == [
        (1, "tests"),
        (2, "os"),
        (2, "tests.inference.payloads"),
        (3, "tests.training"),
        (4, "benchmarks.sub"),
        (5, "benchmarks"),
        (6, "importlib"),
        (7, "tests.z"),
        (8, "tests"),
    ]


def test_the_tree_guard_fails_on_bytecode_and_lists_what_a_person_may_have_done(tmp_path: Path) -> None:
    # Given a tree with a module, a note and a file that stays as it is
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "module.py").write_text("x = 1\n")
    (tmp_path / "notes.md").write_text("notes\n")
    (tmp_path / "same.txt").write_text("same\n")
    (tmp_path / ".venv" / "lib").mkdir(parents=True)
    before = tree_guard.snapshot(tmp_path)
    # When a session writes bytecode, edits the module, removes the note, touches a file and adds another,
    # and writes into a virtual environment (left out)
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "module.cpython-311.pyc").write_bytes(b"\0")
    (tmp_path / "pkg" / "module.py").write_text("x = 2\n")
    (tmp_path / "notes.md").unlink()
    stat = (tmp_path / "same.txt").stat()
    os.utime(tmp_path / "same.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    (tmp_path / "new.json").write_text("{}")
    (tmp_path / ".venv" / "lib" / "site.pyc").write_bytes(b"\0")
    changes = tree_guard.compare(before, tree_guard.snapshot(tmp_path), root=tmp_path)
    # Then only the bytecode fails the session; the rest is listed, for strict mode (CI) to fail on
    assert changes.written == ["created pkg/__pycache__/module.cpython-311.pyc"]
    assert changes.other == [
        "created new.json",
        "edited pkg/module.py",
        "touched same.txt (same content, new mtime)",
        "removed notes.md",
    ]


def test_the_tree_guard_asks_git_what_is_a_build_output() -> None:
    # Given a path under /build/ (ignored) and a source path (not ignored)
    # When git is asked (read-only)
    # Then only the build output is ignored, so a new file there fails the session
    assert tree_guard.git_ignored(ROOT, ["build/demo/out.json", "standins/new.py"]) == {"build/demo/out.json"}
