"""A local HTTP server with Range support (the real download path) and a moto S3 bucket."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from staging import cli as stage

BUCKET = "staging-test-data"


@dataclass
class FileServer:
    """Serves ``files`` by name; ``cut`` makes the next response for a name stop after that many bytes."""

    base_url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    ranges: bool = True
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (name, Range header)

    def url(self, name: str) -> str:
        return f"{self.base_url}/{name}"


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            name = self.path.lstrip("/").split("?", 1)[0]
            header = self.headers.get("Range")
            server.requests.append((name, header))
            if name not in server.files:
                self.send_error(404)
                return
            data = server.files[name]
            start = 0
            match = re.fullmatch(r"bytes=(\d+)-", header or "") if server.ranges else None
            if match and int(match.group(1)) >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if match:
                start = int(match.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(data) - start))
            self.send_header("Accept-Ranges", "bytes" if server.ranges else "none")
            self.end_headers()
            body = data[start:]
            if name in server.cut:
                body = body[: server.cut.pop(name)]
                self.wfile.write(body)
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

    return Handler


@pytest.fixture
def http_files() -> Iterator[FileServer]:
    files = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    files.base_url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield files
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A versioned bucket (versions count the writes) with KMS default encryption, as the Data stack has."""
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3")
        key = boto3.client("kms").create_key()["KeyMetadata"]["Arn"]
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
        client.put_bucket_encryption(
            Bucket=BUCKET,
            ServerSideEncryptionConfiguration={
                "Rules": [
                    {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key}}
                ]
            },
        )
        client.bucket_default_key = key
        yield client


def versions(client: Any, prefix: str = "") -> dict[str, int]:
    """How many times each key was written."""
    counts: dict[str, int] = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=BUCKET, Prefix=prefix):
        for version in page.get("Versions", []):
            counts[version["Key"]] = counts.get(version["Key"], 0) + 1
    return counts


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def run_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """Runs the command in-process (so moto sees its S3 calls), with a per-test cache."""

    def run(*args: str) -> Run:
        argv = [*args, "--no-progress", "--jobs", "2"]
        if "--cache-dir" not in args:
            argv += ["--cache-dir", str(tmp_path / "cache")]
        capsys.readouterr()
        code = stage.main(argv)
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
