"""The lock files are in step with the requirements files they are resolved from (`make lock`).

Every environment installs from a lock (exact versions with their hashes, ``pip install --require-hashes``);
people edit the requirements files. A requirement added, removed or moved out of what its lock has, without
`make lock` run again, fails here, offline: the locks are read, never resolved. uv writes, under each package,
what requires it (``# via -r requirements.txt`` for a requirements file's own line), so a lock tells which of
its packages each requirements file asks for.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = ROOT / "Makefile"
# Never in a lock: torch comes first, alone, as its CPU build (scripts/torch_cpu.py), and PyPI's CUDA build's
# CUDA dependencies are left out (requirements-lock-excludes.txt).
TORCH = "torch"
CUDA_PACKAGE = re.compile(r"^(nvidia-|cuda-|triton$)")
# The platform every lock is resolved for first (aarch64 must resolve the same: `make lock` compares them).
TARGET = {
    "python_version": "3.11",
    "python_full_version": "3.11.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)==(?P<version>\S+)\s*\\?$")
HASH = re.compile(r"^--hash=sha256:[0-9a-f]{64}\s*\\?$")


@dataclass
class Pin:
    version: str
    hashes: int = 0
    # What requires it: "-r FILE" (a requirements file's own line), "-c FILE" or a package's name.
    via: set[str] = field(default_factory=set)


def read_lock(path: Path) -> dict[str, Pin]:
    """``{canonical name: Pin}``; fails on anything but ``name==version`` entries, hashes and comments."""
    pins: dict[str, Pin] = {}
    current: Pin | None = None
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            source = line.lstrip("#").strip().removeprefix("via").strip()
            if current is not None and raw.startswith(" ") and source:
                current.via.add(source)
            continue
        if HASH.match(line):
            assert current is not None, f"{path.name}:{number}: a hash before any package"
            current.hashes += 1
            continue
        entry = ENTRY.match(line)
        assert entry, f"{path.name}:{number}: not a `name==version` entry with hashes: {line!r}"
        current = pins[canonicalize_name(entry["name"])] = Pin(entry["version"])
    return pins


def read_requirements(path: Path, root: Path = ROOT) -> dict[str, dict[str, Requirement]]:
    """``{file as uv names it: {canonical name: requirement}}`` for ``path`` and every file it includes with
    ``-r`` (relative to the including file), the requirements whose markers hold on the target platform."""
    found: dict[str, dict[str, Requirement]] = {}
    pending = [path]
    while pending:
        current = pending.pop()
        key = current.resolve().relative_to(root.resolve()).as_posix()
        if key in found:
            continue
        found[key] = {}
        for raw in current.read_text().splitlines():
            line = re.sub(r"(^|\s)#.*$", "", raw).strip()
            if not line:
                continue
            if line.startswith(("-r ", "--requirement ")):
                pending.append(current.parent / line.split(maxsplit=1)[1])
                continue
            assert not line.startswith("-"), f"{key}: an option `make lock` does not expect: {line!r}"
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate(TARGET):
                found[key][canonicalize_name(requirement.name)] = requirement
    return found


@dataclass(frozen=True)
class Lock:
    path: Path
    inputs: tuple[Path, ...]  # what `make lock` resolves (-r)
    constraints: tuple[Path, ...]  # the image's lock a layer is resolved against (-c)


def makefile_locks(makefile: Path = MAKEFILE) -> list[Lock]:
    """The locks `make lock` writes, with what each is resolved from: its ``$(call lock,LOCK,INPUTS)`` lines."""
    text = makefile.read_text()
    variables = dict(re.findall(r"^([A-Z_]+_LOCK) := (\S+)$", text, re.MULTILINE))
    locks = []
    for variable, arguments in re.findall(r"^\t\$\(call lock,\$\(([A-Z_]+)\),(.+)\)$", text, re.MULTILINE):
        words = re.sub(r"\$\(([A-Z_]+)\)", lambda m: variables[m[1]], arguments).split()
        constraints = tuple(ROOT / words[i + 1] for i, word in enumerate(words) if word == "-c")
        inputs = tuple(
            ROOT / word for i, word in enumerate(words) if word != "-c" and (i == 0 or words[i - 1] != "-c")
        )
        locks.append(Lock(ROOT / variables[variable], inputs, constraints))
    return locks


def out_of_step(lock: Lock, root: Path = ROOT) -> list[str]:
    """Why ``lock`` is not what `make lock` would write from its inputs now (empty when it is); file names are
    relative to ``root``, where `make lock` runs."""
    pins = read_lock(lock.path)
    problems = [] if "\n#    make lock\n" in lock.path.read_text() else ["not written by `make lock`"]
    problems += [f"{name}=={pin.version} has no hash" for name, pin in pins.items() if not pin.hashes]
    problems += [f"{name} is in the lock (never: see {MAKEFILE.name})" for name in pins if name == TORCH]
    problems += [f"{name} is a CUDA package" for name in pins if CUDA_PACKAGE.match(name)]
    for source in lock.inputs:
        for key, requirements in read_requirements(source, root).items():
            asked = {name for name, pin in pins.items() if f"-r {key}" in pin.via}
            wanted = set(requirements) - {TORCH}
            problems += [f"{key} asks for {name}, which the lock lacks" for name in sorted(wanted - asked)]
            problems += [
                f"the lock has {name} for {key}, which no longer asks for it"
                for name in sorted(asked - wanted)
            ]
            problems += [
                f"{key} asks for {requirement}, the lock has {pins[name].version}"
                for name, requirement in sorted(requirements.items())
                if name in asked and not requirement.specifier.contains(pins[name].version, prereleases=True)
            ]
    for image in lock.constraints:
        image_pins = read_lock(image)
        key = image.relative_to(root).as_posix()
        problems += [
            f"{name}=={pin.version}, the image's lock {key} has {image_pins[name].version}"
            for name, pin in sorted(pins.items())
            if name in image_pins and Version(pin.version) != Version(image_pins[name].version)
        ]
    return problems


def torch_pin() -> str:
    """``scripts/torch_cpu.py``'s PIN, read without running it."""
    module = ast.parse((ROOT / "scripts" / "torch_cpu.py").read_text())
    for node in module.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PIN" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("scripts/torch_cpu.py has no PIN")


LOCKS = makefile_locks()


def test_make_lock_writes_every_lock_file_and_each_environment_installs_from_its_locks():
    # Given the lock files in the repository and the Makefile
    found = set()
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [
            d for d in subfolders if not d.startswith(".") and d not in ("node_modules", "build")
        ]
        found |= {Path(folder) / name for name in files if name.endswith(".lock.txt")}
    text = MAKEFILE.read_text()
    stamps = " ".join(re.findall(r"^\$\([A-Z_]+\)/\.installed: (.*)$", text, re.MULTILINE))

    # When the locks `make lock` writes are listed
    written = {lock.path for lock in LOCKS}

    # Then they are all the lock files, and each one is what some environment's .installed stamp depends on
    assert written == found
    variables = dict(re.findall(r"^([A-Z_]+_LOCK) := (\S+)$", text, re.MULTILINE))
    assert {ROOT / path for name, path in variables.items() if f"$({name})" in stamps} == written


@pytest.mark.parametrize("lock", LOCKS, ids=lambda lock: lock.path.relative_to(ROOT).as_posix())
def test_each_lock_is_in_step_with_its_requirements(lock: Lock):
    # Given a lock and the requirements files `make lock` resolves it from
    # When every requirement is looked up in it
    problems = out_of_step(lock)

    # Then each is pinned there, within its range and with hashes, and the lock pins nothing for a line
    # that is gone; a layer on top of an image changes none of the image's versions
    assert not problems, (
        f"{lock.path.relative_to(ROOT)} is out of step with its requirements: run `make lock`, review the "
        "diff, commit both:\n  " + "\n  ".join(problems)
    )


def test_every_torch_pin_is_the_one_the_cpu_build_installs():
    # Given the requirements files the locks are resolved from
    requirements = {
        key: found
        for lock in LOCKS
        for source in lock.inputs
        for key, found in read_requirements(source).items()
        if TORCH in found
    }

    # When their torch pins are read
    pins = {key: str(found[TORCH]) for key, found in requirements.items()}

    # Then each is scripts/torch_cpu.py's, the one make install installs before the lock
    assert pins and set(pins.values()) == {torch_pin()}, pins


def test_a_requirement_moved_added_or_removed_without_make_lock_is_caught(tmp_path: Path):
    # Given a lock written for `a>=1` and `b`, with hashes
    digest = "--hash=sha256:" + "0" * 64
    lock_path = tmp_path / "requirements.lock.txt"
    lock_path.write_text(
        "# This file was autogenerated by uv via the following command:\n#    make lock\n"
        f"a==1.5 \\\n    {digest}\n    # via -r requirements.txt\n"
        f"b==2.0 \\\n    {digest}\n    # via\n    #   -r requirements.txt\n    #   a\n"
        f"c==3.0 \\\n    {digest}\n    # via b\n"
    )
    source = tmp_path / "requirements.txt"

    def problems(text: str) -> list[str]:
        source.write_text(text)
        return out_of_step(Lock(lock_path, (source,), ()), tmp_path)

    # When its requirements stay, move out of the pinned version, gain one, or lose one
    # Then only the unchanged file is in step
    assert problems("a>=1  # ranged\nb\n") == []
    assert problems("a>=2\nb\n") == ["requirements.txt asks for a>=2, the lock has 1.5"]
    assert problems("a>=1\nb\nd==1\n") == ["requirements.txt asks for d, which the lock lacks"]
    assert problems("a>=1\n") == ["the lock has b for requirements.txt, which no longer asks for it"]

    # And a pin without a hash is refused
    lock_path.write_text(
        "#\n#    make lock\na==1.5\n    # via -r requirements.txt\nb==2.0 \\\n    " + digest + "\n"
    )
    source.write_text("a\n")
    assert "a==1.5 has no hash" in out_of_step(Lock(lock_path, (source,), ()), tmp_path)
