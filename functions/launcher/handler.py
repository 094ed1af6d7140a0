"""Lambda entry point: validated settings and clients, built once per container, then one call."""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

import boto3

from .aws import Clients, launch
from .settings import LaunchSettings

try:  # the Lambda package carries it beside this module
    from . import environment  # type: ignore[attr-defined]
except ImportError:  # the repository
    from functions import environment

# Lambda leaves the root logger at WARNING: this package logs at INFO, the libraries (botocore) do not.
logging.getLogger(__name__.rpartition(".")[0]).setLevel(logging.INFO)
logger = logging.getLogger(__name__)


@functools.cache
def dependencies() -> tuple[LaunchSettings, Clients]:
    """Cold start: a bad environment fails here, naming every variable to fix."""
    settings = LaunchSettings.from_environment(os.environ)
    clients = Clients(sagemaker=boto3.client("sagemaker"), s3=boto3.client("s3"))
    return settings, clients


def handler(event: Any, context: Any) -> dict[str, Any]:
    """Starts a training or tuning job for a schedule, new-data or manual event."""
    settings, clients = dependencies()
    request_id = context.aws_request_id  # Lambda keeps it across its own retries: it names manual jobs
    result = launch(event, settings, sagemaker=clients.sagemaker, s3=clients.s3, request_id=request_id)
    logger.info(json.dumps({"message": "launch", "request_id": request_id, **result}))
    return result


# Validated at cold start: a misconfigured function fails on its first invocation, naming every variable.
if environment.in_lambda(os.environ):
    dependencies()
