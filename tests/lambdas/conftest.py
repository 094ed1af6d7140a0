"""Fixtures shared by the Lambda tests: a fake Lambda context, an emulated AWS, strict request checks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.handlers
import botocore.session
import pytest
from botocore.model import Shape
from moto import mock_aws

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class FakeLambdaContext:
    """The attributes and method of the Lambda context object that handlers may read."""

    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-function"
    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "2025/01/01/[$LATEST]0123456789abcdef"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a fixed region, so nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def emulated_aws(aws_credentials: None) -> Iterator[None]:
    """Every boto3 client created inside the test talks to moto."""
    with mock_aws():
        yield


# --- strict request checks ----------------------------------------------------------------------------
# botocore's client-side validation checks required members, types and minimums, but not maximum lengths,
# enums or patterns, which the real service enforces. These checks close that gap.


def request_violations(params: Any, shape: Shape, path: str = "") -> list[str]:
    """Where ``params`` break the service model's max-length, enum or (Python-compatible) pattern rules."""
    if shape.type_name == "structure" and isinstance(params, dict):
        return _structure_violations(params, shape, path)
    if shape.type_name == "list" and isinstance(params, list):
        return _list_violations(params, shape, path)
    if shape.type_name == "map" and isinstance(params, dict):
        return _map_violations(params, shape, path)
    if shape.type_name == "string" and isinstance(params, str):
        return _string_violations(params, shape, path)
    return []


def _structure_violations(params: dict[str, Any], shape: Any, path: str) -> list[str]:
    found: list[str] = []
    for name, value in params.items():
        if name in shape.members:
            found += request_violations(value, shape.members[name], f"{path}.{name}".lstrip("."))
    return found


def _list_violations(params: list[Any], shape: Any, path: str) -> list[str]:
    found: list[str] = []
    if "max" in shape.metadata and len(params) > shape.metadata["max"]:
        found.append(f"{path}: {len(params)} items > max {shape.metadata['max']}")
    for index, item in enumerate(params):
        found += request_violations(item, shape.member, f"{path}[{index}]")
    return found


def _map_violations(params: dict[str, Any], shape: Any, path: str) -> list[str]:
    found: list[str] = []
    if "max" in shape.metadata and len(params) > shape.metadata["max"]:
        found.append(f"{path}: {len(params)} entries > max {shape.metadata['max']}")
    for key, value in params.items():
        found += request_violations(key, shape.key, f"{path}<key {key!r}>")
        found += request_violations(value, shape.value, f"{path}[{key!r}]")
    return found


def _string_violations(params: str, shape: Any, path: str) -> list[str]:
    found: list[str] = []
    meta = shape.metadata
    if "max" in meta and len(params) > meta["max"]:
        found.append(f"{path}: length {len(params)} > max {meta['max']}")
    if shape.enum and params not in shape.enum:
        found.append(f"{path}: {params!r} is not one of the allowed values")
    pattern = meta.get("pattern")
    if pattern and r"\p{" not in pattern:
        try:
            compiled = re.compile(pattern)
        except re.error:
            compiled = None
        if compiled is not None and not compiled.fullmatch(params):
            found.append(f"{path}: {params!r} does not match {pattern}")
    if r"\p{" in (pattern or "") and any(ord(c) < 32 for c in params):
        found.append(f"{path}: control characters are not allowed")
    return found


@pytest.fixture
def strict_requests(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every client created in the test fails a request the real service would reject for length, enum or
    pattern, on top of botocore's own validation. Works with moto and with ``Stubber`` alike."""

    def check(params: dict[str, Any], model: Any, **_: Any) -> None:
        problems = request_violations(params, model.input_shape)
        assert not problems, f"{model.name} request would be rejected: " + "; ".join(problems)

    # New botocore sessions register these handlers (moto hooks in the same way); dropping the default
    # session makes boto3.client() build a new one.
    monkeypatch.setattr(
        botocore.handlers,
        "BUILTIN_HANDLERS",
        [*botocore.handlers.BUILTIN_HANDLERS, ("before-parameter-build", check)],
    )
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture(scope="session")
def service_model() -> Callable[[str], Any]:
    """botocore's model of a service, for validating requests built without a client."""
    session = botocore.session.get_session()
    return session.get_service_model


def cold_start(function: str, environ: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Imports ``functions.<function>.handler`` in a fresh interpreter, as Lambda's runtime does in a new
    container, with what Lambda adds to every function's environment."""
    return subprocess.run(
        [sys.executable, "-c", f"import lambdas.{function}.handler"],
        cwd=ROOT,
        env={
            "PATH": os.environ.get("PATH", ""),
            "PYTHONDONTWRITEBYTECODE": "1",  # the repository stays as it is
            "AWS_LAMBDA_FUNCTION_NAME": function,
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            **environ,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
