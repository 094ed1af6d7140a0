"""Getting archives into the local cache: resumable HTTP downloads, S3 copies, local paths as they are.

Every download is checksum-verified: the sha256 of what arrived is recorded next to it
(``<file>.sha256``) and checked again whenever the cached copy is reused, and ``--sha256`` pins the
expected value where the publisher gives none we can check.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from . import StagingError

_CHUNK = 1 << 20
_ATTEMPTS = 5
_TIMEOUT_S = 60
_USER_AGENT = "acoustic-shield-staging/1"

Log = Callable[[str], None]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cached(path: Path, expected: str | None, log: Log) -> bool:
    sidecar = _sidecar(path)
    if not (path.is_file() and sidecar.is_file()):
        return False
    recorded = sidecar.read_text().split()[0] if sidecar.read_text().strip() else ""
    actual = sha256_file(path)
    if actual != recorded:
        log(f"{path.name}: cached copy does not match its recorded sha256; downloading it again")
    elif expected and actual != expected:
        log(f"{path.name}: cached copy has sha256 {actual}, not the pinned {expected}; downloading it again")
    else:
        return True
    path.unlink()
    sidecar.unlink()
    return False


def _finish(part: Path, path: Path, url: str, expected: str | None) -> None:
    actual = sha256_file(part)
    if expected and actual != expected:
        part.unlink()
        raise StagingError(
            f"{url}: downloaded sha256 {actual} does not match the pinned {expected}; "
            "check --sha256 or the source"
        )
    os.replace(part, path)
    _sidecar(path).write_text(f"{actual}  {path.name}\n")


def fetch(
    url: str,
    cache_dir: Path,
    *,
    name: str | None = None,
    expected_sha256: str | None = None,
    progress: bool = True,
    log: Log,
) -> Path:
    """A local path to the file at ``url`` (http(s)://, s3:// or a local path), downloading if needed."""
    if not url.startswith(("http://", "https://", "s3://")):
        path = Path(url).expanduser()
        if not path.is_file():
            raise StagingError(f"{url}: no such file")
        if expected_sha256 and (actual := sha256_file(path)) != expected_sha256:
            raise StagingError(f"{url}: sha256 {actual} does not match the pinned {expected_sha256}")
        return path
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / (name or _file_name(url))
    if _cached(path, expected_sha256, log):
        log(f"{path.name}: using the cached copy (sha256 verified)")
        return path
    part = path.with_name(path.name + ".part")
    if url.startswith("s3://"):
        _download_s3(url, part, progress=progress)
    else:
        _download_http(url, part, progress=progress, log=log)
    _finish(part, path, url, expected_sha256)
    return path


def _file_name(url: str) -> str:
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "download"


def _progress_bar(total: int | None, initial: int, desc: str, enabled: bool) -> tqdm:
    tty = sys.stderr.isatty()
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
        mininterval=0.5 if tty else 30.0,
        file=sys.stderr,
    )


def _download_http(url: str, part: Path, *, progress: bool, log: Log) -> None:
    """Downloads into ``part``, resuming from its current length with a Range request."""
    last_error: Exception | None = None
    for attempt in range(1, _ATTEMPTS + 1):
        offset = part.stat().st_size if part.exists() else 0
        request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        if offset:
            request.add_header("Range", f"bytes={offset}-")
        try:
            with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
                total = _receive(response, part, offset, url, progress=progress, log=log)
            if total is None or part.stat().st_size == total:
                return
            last_error = ConnectionError(f"the connection closed at {part.stat().st_size} of {total} bytes")
        except urllib.error.HTTPError as err:
            if err.code == 416 and offset and _range_total(err.headers.get("Content-Range")) == offset:
                return  # the partial file was already complete
            if err.code == 416:
                part.unlink()
                last_error = err
            elif err.code < 500 and err.code != 429:
                raise StagingError(f"{url}: HTTP {err.code} {err.reason}") from err
            else:
                last_error = err
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            last_error = err
        if attempt < _ATTEMPTS:
            log(f"{part.name}: download interrupted ({last_error}); resuming (attempt {attempt + 1})")
            time.sleep(min(2**attempt, 30) * 0.1)
    raise StagingError(
        f"{url}: download failed after {_ATTEMPTS} attempts ({last_error}); run again to resume"
    )


def _range_total(content_range: str | None) -> int | None:
    match = re.match(r"bytes (?:\*|(\d+)-(\d+))/(\d+)", content_range or "")
    return int(match.group(3)) if match else None


def _receive(
    response: http.client.HTTPResponse, part: Path, offset: int, url: str, *, progress: bool, log: Log
) -> int | None:
    if offset and response.status == 206:
        start = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
        if not start or int(start.group(1)) != offset:
            raise StagingError(f"{url}: the server answered a resume request with the wrong range")
        mode, total = "ab", _range_total(response.headers.get("Content-Range"))
    else:
        if offset:
            log(f"{part.name}: the server does not resume downloads; starting again")
        offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
    with (
        part.open(mode) as out,
        _progress_bar(total, offset, part.name.removesuffix(".part"), progress) as bar,
    ):
        while chunk := response.read(_CHUNK):
            out.write(chunk)
            bar.update(len(chunk))
    return total


def _download_s3(url: str, part: Path, *, progress: bool) -> None:
    import boto3
    import botocore.exceptions

    bucket, _, key = url.removeprefix("s3://").partition("/")
    client = boto3.client("s3")
    try:
        size = client.head_object(Bucket=bucket, Key=key)["ContentLength"]
        with _progress_bar(size, 0, part.name.removesuffix(".part"), progress) as bar:
            client.download_file(bucket, key, str(part), Callback=bar.update)
    except botocore.exceptions.ClientError as err:
        raise StagingError(f"{url}: {err}") from err
