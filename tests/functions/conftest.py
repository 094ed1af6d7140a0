"""Fixtures for Lambda handler tests."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import pytest


@dataclass
class FakeLambdaContext:
    """The attributes of the Lambda context object that handlers use."""

    function_name: str = "test-function"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()
