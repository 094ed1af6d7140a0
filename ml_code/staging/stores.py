"""Where clips come from and where staged datasets go: a local directory or an S3 prefix."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

from . import StagingError

_DELETE_BATCH = 1000


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
    """A staged dataset's home; paths are relative and use ``/``."""

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
        if not self.root.is_dir():
            return {}
        return {
            path.relative_to(self.root).as_posix(): path.stat().st_size
            for path in self.root.rglob("*")
            if path.is_file() and not path.name.startswith(".tmp-")
        }

    def read_text(self, path: str) -> str | None:
        target = self.root / path
        return target.read_text(encoding="utf-8") if target.is_file() else None

    def write(self, path: str, data: bytes) -> None:
        target = self.root / path
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
        for path in paths:
            target = self.root / path
            target.unlink(missing_ok=True)
            parent = target.parent
            while parent != self.root and parent.is_dir() and not any(parent.iterdir()):
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
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + path)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None
        return body.decode("utf-8")

    def write(self, path: str, data: bytes) -> None:
        content_type = "application/x-ndjson" if path.endswith(".jsonl") else "application/octet-stream"
        self.client.put_object(
            Bucket=self.bucket, Key=self.prefix + path, Body=data, ContentType=content_type, **self.put_args
        )

    def delete(self, paths: Iterable[str]) -> None:
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

    def files(self) -> list[str]:
        """Relative paths (``/``-separated) of every file, sorted."""
        ...

    def reader(self, path: str) -> Callable[[], bytes]: ...


class LocalTree:
    def __init__(self, root: Path) -> None:
        if not root.is_dir():
            raise StagingError(f"{root}: no such directory")
        self.root = root
        self.url = str(root)

    def files(self) -> list[str]:
        return sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())

    def reader(self, path: str) -> Callable[[], bytes]:
        target = self.root / path
        return target.read_bytes


class S3Tree:
    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.bucket, prefix = split_s3(url)
        self.prefix = prefix.rstrip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{self.bucket}/{self.prefix}"

    def files(self) -> list[str]:
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix
        ):
            found += [item["Key"][len(self.prefix) :] for item in page.get("Contents", [])]
        return sorted(path for path in found if path and not path.endswith("/"))

    def reader(self, path: str) -> Callable[[], bytes]:
        return s3_reader(self.client, self.bucket, self.prefix + path)


def s3_reader(client: Any, bucket: str, key: str) -> Callable[[], bytes]:
    def read() -> bytes:
        return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())

    return read
