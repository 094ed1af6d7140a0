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

from .assets import EXCLUDED_DIRS, EXCLUDED_SUFFIXES, Bundle

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


def write_tar_gz(bundle: Bundle, target: Path) -> None:
    """A .tar.gz of the bundle's files at their paths, in sorted order, with fixed mtimes, owners and modes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(bundle.items()):
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            tar.addfile(info, io.BytesIO(data))
    with target.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buffer.getvalue())


@jsii.implements(cdk.ILocalBundling)
class TarGzBundler:
    """Packs a bundle as ``<name>`` (a SageMaker ``sourcedir.tar.gz``)."""

    def __init__(self, bundle: Bundle, name: str) -> None:
        self.bundle, self.name = bundle, name

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:
        write_tar_gz(self.bundle, Path(output_dir) / self.name)
        return True


@jsii.implements(cdk.ILocalBundling)
class CopyBundler:
    """Copies a bundle's files, and folders, into the asset under the given names (a Lambda package, a build's
    source); ``skipped_suffixes``: files left out of every folder (default none)."""

    def __init__(self, folders: Bundle, skipped_suffixes: tuple[str, ...] = ()) -> None:
        self.folders, self.skipped_suffixes = folders, skipped_suffixes

    def try_bundle(self, output_dir: str, options: Any = None) -> bool:
        for name, root in sorted(self.folders.items()):
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
