"""Lambda entry point: starts a SageMaker training job for a schedule event or a manual invocation."""

from __future__ import annotations

import logging
import os
from functools import cache
from typing import Any

import boto3

from .logic import LaunchSettings, launch

logging.getLogger().setLevel(logging.INFO)


@cache
def _settings() -> LaunchSettings:
    return LaunchSettings.from_env(os.environ)


@cache
def _clients() -> tuple[Any, Any]:
    return boto3.client("sagemaker"), boto3.client("s3")


def handler(event: Any, context: Any) -> dict[str, Any]:
    sagemaker, s3 = _clients()
    return launch(event, _settings(), sagemaker=sagemaker, s3=s3, request_id=context.aws_request_id)


# Validated at cold start: a misconfigured function fails on its first invocation, with the variable's name.
if "AWS_LAMBDA_FUNCTION_NAME" in os.environ:
    _settings()
