"""What the speech sources share: their released ``.tar.gz`` archives, unpacked once into the cache.

A gzip stream has no random access, and the pipeline reads every clip twice (validation, then the write)
from several threads, so an archive is read once, front to back, and the members a source needs are
written under the cache (``<cache>/<source>/unpacked/<archive>-<digest>/``); the source then reads that
folder like any other. A record next to it (``.json``) holds the archive's size and modification time and
the members refused while unpacking, so a rerun with the same archive unpacks nothing and reports the same
refusals.

Nothing in an archive can write outside that folder: a member whose name is absolute, holds a drive
letter or a backslash, or climbs out (``..``) is refused and counted, as are links and special files
(only regular files are written, and no link is ever created, so no later member can go through one).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import sys
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import IO

from tqdm import tqdm

from .. import StagingError
from .common import SourceOptions, unsafe_member

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
_RECORD_VERSION = 1
_CHUNK = 1 << 20


def is_archive(url: str) -> bool:
    """Whether ``url`` names a tar archive (as the speech datasets are released) rather than a folder."""
    return url.lower().rstrip("/").endswith(ARCHIVE_SUFFIXES)


def archive_name(url: str) -> str:
    """The file name an archive's URL or path ends with (its name in the cache, and for ``--sha256 FILE=``)."""
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "download"


def archive_stem(name: str) -> str:
    """``dev-clean`` of ``dev-clean.tar.gz``."""
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def unpacked(
    archive: Path, options: SourceOptions, cache: str, keep: Callable[[str], bool]
) -> tuple[Path, list[tuple[str, str]]]:
    """The folder holding the archive's members that ``keep`` selects (by their ``/``-joined name), unpacked
    into the cache unless an earlier run already did, and (member, reason) of each refused member."""
    digest = hashlib.sha256(str(archive.resolve()).encode()).hexdigest()[:12]
    target = options.cache_dir / cache / "unpacked" / f"{archive_stem(archive.name)}-{digest}"
    record = target.with_name(target.name + ".json")
    stat = archive.stat()
    stamp = {
        "version": _RECORD_VERSION,
        "archive": archive.name,
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
    }
    if target.is_dir() and record.is_file():
        try:
            recorded = json.loads(record.read_text())
        except ValueError:
            recorded = {}
        if isinstance(recorded, dict) and {key: recorded.get(key) for key in stamp} == stamp:
            options.log(f"{archive.name}: using the copy unpacked in the cache")
            return target, [(str(m), str(r)) for m, r in recorded.get("refused", [])]
    record.unlink(missing_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    options.log(f"{archive.name}: unpacking into the cache (once; later runs reuse it)")
    refused = _unpack(archive, partial, keep, options)
    partial.rename(target)
    record.write_text(json.dumps({**stamp, "refused": refused}) + "\n")
    return target, refused


class _Counting:
    """A binary file that moves a progress bar as it is read."""

    def __init__(self, handle: IO[bytes], bar: tqdm) -> None:
        self.handle, self.bar = handle, bar

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.bar.update(len(data))
        return data


def _unpack(
    archive: Path, into: Path, keep: Callable[[str], bool], options: SourceOptions
) -> list[tuple[str, str]]:
    refused: list[tuple[str, str]] = []
    tty = sys.stderr.isatty()
    try:
        with (
            archive.open("rb") as raw,
            tqdm(
                total=archive.stat().st_size,
                desc=f"unpack {archive.name}",
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                disable=not options.progress,
                mininterval=0.5 if tty else 30.0,
                file=sys.stderr,
            ) as bar,
            tarfile.open(fileobj=_Counting(raw, bar), mode="r|*") as tar,  # type: ignore[call-overload]
        ):
            for member in tar:
                reason = unsafe_member(member.name)
                if reason:
                    refused.append((member.name, reason))
                    continue
                name = "/".join(PurePosixPath(member.name).parts)
                if member.isdir() or not name or not keep(name):
                    continue
                if not member.isfile():
                    refused.append((name, "a link or special file in the archive; not unpacked"))
                    continue
                problem = _write_member(tar, member, into, name)
                if problem:
                    refused.append((name, problem))
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        shutil.rmtree(into, ignore_errors=True)
        hint = "check --source-url"
        if archive.is_relative_to(options.cache_dir):
            # A download that ended early without an error is checksummed as it is; drop it.
            archive.unlink(missing_ok=True)
            archive.with_name(archive.name + ".sha256").unlink(missing_ok=True)
            hint = "removed it from the cache; run again to download it afresh, or check --source-url"
        raise StagingError(f"{archive.name} is not a readable tar archive ({err}); {hint}") from err
    except OSError as err:
        shutil.rmtree(into, ignore_errors=True)
        raise StagingError(
            f"{archive.name}: could not unpack it into the cache ({err}); see --cache-dir"
        ) from err
    return sorted(refused)


def _write_member(tar: tarfile.TarFile, member: tarfile.TarInfo, into: Path, name: str) -> str:
    """Writes one regular file under ``into``; "" or why it could not be (a file where a folder goes)."""
    target = into.joinpath(*name.split("/"))
    source = tar.extractfile(member)
    if source is None:
        return "not a regular file"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with source, target.open("wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)
    except (FileExistsError, NotADirectoryError, IsADirectoryError):
        return "its path collides with another member (a file where a folder goes)"
    return ""
