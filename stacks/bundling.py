"""Deterministic local bundling (no Docker): the same sources always give byte-identical assets."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import jsii

# The repository's folders that assets are made of.
ROOT = Path(__file__).resolve().parents[1]
ML_CODE = ROOT / "ml_code"
FUNCTIONS_DIR = ROOT / "functions"
EXCLUDED_DIRS = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
# Compiled extensions and their sources: built for this machine, never for the function's platform.
NATIVE_SUFFIXES = (".so", ".pyd", ".dylib", ".c", ".h")


def source_files(root: Path, skipped_suffixes: tuple[str, ...] = ()) -> Iterator[Path]:
    """Files under ``root`` in sorted order, caches and bytecode (and ``skipped_suffixes``) left out."""
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part in EXCLUDED_DIRS for part in relative.parts) or path.suffix in (
            EXCLUDED_SUFFIXES + skipped_suffixes
        ):
            continue
        if path.is_file():
            yield path


def write_tar_gz(root: Path, target: Path) -> None:
    """A .tar.gz of ``root``'s files at the archive root, with fixed mtimes, owners and modes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in source_files(root):
            info = tarfile.TarInfo(path.relative_to(root).as_posix())
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    with target.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())


@jsii.implements(cdk.ILocalBundling)
class TarGzBundler:
    """Packs a folder as ``<name>`` (a SageMaker ``sourcedir.tar.gz``)."""

    def __init__(self, root: Path, name: str) -> None:
        self.root, self.name = root, name

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:
        write_tar_gz(self.root, Path(output_dir) / self.name)
        return True


@jsii.implements(cdk.ILocalBundling)
class CopyBundler:
    """Copies folders (and single files) into the asset under the given names (a Lambda package, a build's
    source); ``skipped_suffixes``: files left out of every folder (default none)."""

    def __init__(self, folders: dict[str, Path], skipped_suffixes: tuple[str, ...] = ()) -> None:
        self.folders, self.skipped_suffixes = folders, skipped_suffixes

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:
        for name, root in self.folders.items():
            if root.is_file():
                (Path(output_dir) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(root, Path(output_dir) / name)
                continue
            for path in source_files(root, self.skipped_suffixes):
                target = Path(output_dir) / name / path.relative_to(root)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        return True


def bundling(local: Any, output_type: cdk.BundlingOutput) -> cdk.BundlingOptions:
    # The image is never pulled: local bundling always succeeds, and synth must not need Docker.
    return cdk.BundlingOptions(
        image=cdk.DockerImage.from_registry("local-bundling-only"), local=local, output_type=output_type
    )
