"""Where clips come from and where staged datasets go: a local directory or an S3 prefix."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from . import StagingError

_DELETE_BATCH = 1000
_DRIVE = re.compile(r"[A-Za-z]:")
_MAX_NAME_BYTES = 255  # the usual file system limit on one name
_CONTENT_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}  # by suffix; clips are octet-stream


def unsafe_name(name: str) -> str | None:
    """Why ``name`` cannot be one folder or file name of a staged dataset, or None when it can."""
    if name in ("", ".", ".."):
        return f"{name!r} is not a name"
    if "/" in name or "\\" in name:
        return "it is a path, not a name (it holds '/' or '\\')"
    if _DRIVE.match(name):
        return "it starts with a drive letter"
    if name.startswith("."):
        return "it starts with '.': training skips hidden files and folders"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "it holds a control character"
    if len(name.encode("utf-8")) > _MAX_NAME_BYTES:
        return f"it is longer than {_MAX_NAME_BYTES} bytes"
    return None


def check_path(path: str, where: str) -> None:
    """Refuses a destination path unless every ``/``-separated segment is a plain name (see unsafe_name)."""
    for segment in path.split("/"):
        reason = unsafe_name(segment)
        if reason:
            raise StagingError(f"{where}: refusing the path {path!r}: segment {segment!r}: {reason}")


def is_s3(url: str) -> bool:
    return url.startswith("s3://")


def split_s3(url: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` -> ("bucket", "a/b")."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not bucket:
        raise StagingError(f"{url}: an S3 URL needs a bucket, like s3://bucket/datasets/esc50/")
    return bucket, key


def s3_client(max_connections: int = 10) -> Any:
    """An S3 client from the ambient credentials; AWS_ENDPOINT_URL_S3 points it at an emulator."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", config=Config(max_pool_connections=max_connections))


class Destination(Protocol):
    """A staged dataset's home; paths are relative and use ``/``.

    Every implementation refuses (StagingError) a path to write or read that is not plain names joined
    by ``/`` (check_path), or that leads outside the destination: this is the one check every source's
    names go through.
    """

    url: str

    def list(self) -> dict[str, int]:
        """Every file under the destination, with its size."""
        ...

    def read_text(self, path: str) -> str | None: ...

    def write(self, path: str, data: bytes) -> None: ...

    def delete(self, paths: Iterable[str]) -> None: ...


class LocalDestination:
    """A directory; files are written to a temporary name and renamed, so a crash leaves no half file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def list(self) -> dict[str, int]:
        """Files, and links of any kind as entries of size -1 (never "unchanged"), without following links.

        Leftover temporary files are listed too, so a rerun removes them like any file that left the set.
        """
        if not self.root.is_dir():
            return {}
        found = {}
        for folder, dirs, files in os.walk(self.root):
            here = Path(folder)
            for name in [*dirs, *files]:
                path = here / name
                if path.is_symlink():
                    found[path.relative_to(self.root).as_posix()] = -1
                elif name in files:
                    found[path.relative_to(self.root).as_posix()] = path.lstat().st_size
        return found

    def _inside(self, path: str) -> Path:
        """``root/path``, refused unless its folder, links resolved, is the root or below it.

        Only the folder is resolved: replacing or unlinking a file that is a link changes the link, never
        what it points to.
        """
        root = self.root.resolve()
        target = root / path
        if not target.parent.resolve().is_relative_to(root):
            raise StagingError(
                f"{self.url}: refusing {path!r}: it leads outside the destination "
                "(through '..' or a symbolic link); remove the link"
            )
        return target

    def read_text(self, path: str) -> str | None:
        check_path(path, self.url)
        target = self._inside(path)
        return target.read_text(encoding="utf-8") if target.is_file() else None

    def write(self, path: str, data: bytes) -> None:
        check_path(path, self.url)
        target = self._inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, paths: Iterable[str]) -> None:
        """Removes files and links (never what a link points to), then the folders that became empty."""
        root = self.root.resolve()
        for path in paths:
            # Not check_path: an earlier, less careful run may have left names it refuses; they must go.
            target = self._inside(path)
            target.unlink(missing_ok=True)
            parent = target.parent
            while parent != root and parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
                parent = parent.parent


class S3Destination:
    """An S3 prefix. Puts rely on the bucket's default encryption unless a KMS key is given."""

    def __init__(self, client: Any, url: str, *, kms_key_id: str | None = None) -> None:
        self.client = client
        self.bucket, prefix = split_s3(url)
        self.prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{self.bucket}/{self.prefix}"
        self.put_args: dict[str, str] = (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": kms_key_id} if kms_key_id else {}
        )

    def list(self) -> dict[str, int]:
        found = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        ):
            for item in page.get("Contents", []):
                found[item["Key"][len(self.prefix) :]] = int(item["Size"])
        return found

    def read_text(self, path: str) -> str | None:
        """The object's text; None when it does not exist.

        Existence is asked of ListObjectsV2, which the prefix-scoped list grant allows: without an
        unconditioned s3:ListBucket, S3 answers a GetObject of a missing key with 403 AccessDenied, not
        NoSuchKey (GetObject, Amazon S3 API Reference), and a 403 is never taken to mean "absent".
        """
        check_path(path, self.url)
        key = self.prefix + path
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=key, MaxKeys=1)
        if not any(item["Key"] == key for item in listed.get("Contents", [])):
            return None
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:  # deleted since it was listed
            return None
        return body.decode("utf-8")

    def write(self, path: str, data: bytes) -> None:
        check_path(path, self.url)
        content_type = _CONTENT_TYPES.get(path.rsplit(".", 1)[-1], "application/octet-stream")
        self.client.put_object(
            Bucket=self.bucket, Key=self.prefix + path, Body=data, ContentType=content_type, **self.put_args
        )

    def delete(self, paths: Iterable[str]) -> None:
        """Deletes keys under the prefix as listed: a key is literal, so even one with '..' stays inside."""
        keys = [self.prefix + path for path in paths]
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = [{"Key": key} for key in keys[start : start + _DELETE_BATCH]]
            answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StagingError(f"could not delete s3://{self.bucket}/{first['Key']}: {first['Message']}")


class Tree(Protocol):
    """A folder of files to read clips from."""

    url: str

    def files(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Relative paths (``/``-separated) of every file, sorted, and (path, reason) of those refused."""
        ...

    def reader(self, path: str) -> Callable[[], bytes]: ...


_OUTSIDE_LINK = "a symbolic link to outside the source folder"
_FOLDER_LINK = "a symbolic link to a folder; not followed"


class LocalTree:
    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise StagingError(f"{root}: no such directory")
        self.root = root
        self.url = str(root)

    def files(self) -> tuple[list[str], list[tuple[str, str]]]:
        """Regular files, and links to files inside the tree; links leading out of it, or to folders, refused.

        A link inside the tree is read as the file it points to (that content is then staged once, as
        any copy is); a folder link is not followed, wherever it points, so no walk can loop.
        """
        root = self.root.resolve()
        found, refused = [], []
        for folder, dirs, files in os.walk(self.root):
            here = Path(folder)
            for name in dirs:
                if (here / name).is_symlink():
                    refused.append(((here / name).relative_to(self.root).as_posix(), _FOLDER_LINK))
            for name in files:
                path = here / name
                relative = path.relative_to(self.root).as_posix()
                if not path.is_symlink():
                    found.append(relative)
                elif not path.resolve().is_relative_to(root):
                    refused.append((relative, _OUTSIDE_LINK))
                elif not path.is_file():
                    refused.append((relative, "a broken symbolic link"))
                else:
                    found.append(relative)
        return sorted(found), sorted(refused)

    def reader(self, path: str) -> Callable[[], bytes]:
        root = self.root.resolve()

        def read() -> bytes:
            # Checked again when read: a link may have changed since the listing.
            target = (self.root / path).resolve()
            if not target.is_relative_to(root):
                raise StagingError(f"{path}: {_OUTSIDE_LINK}")
            return target.read_bytes()

        return read


class S3Tree:
    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.bucket, prefix = split_s3(url)
        self.prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{self.bucket}/{self.prefix}"

    def files(self) -> tuple[list[str], list[tuple[str, str]]]:
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        ):
            found += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        return sorted(path for path in found if path and not path.endswith("/")), []

    def reader(self, path: str) -> Callable[[], bytes]:
        return s3_reader(self.client, self.bucket, self.prefix + path)


def s3_reader(client: Any, bucket: str, key: str) -> Callable[[], bytes]:
    def read() -> bytes:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    return read
