"""Lambda entry point: validated settings and clients, built once per container, then one call."""

from __future__ import annotations

import functools
import json
import logging
import os
from typing import Any

import boto3

from .promotion import Clients, promote
from .settings import Settings

try:  # the Lambda package carries it beside this module
    from . import environment  # type: ignore[attr-defined]
except ImportError:  # the repository
    from functions import environment

# Lambda leaves the root logger at WARNING: this package logs at INFO, the libraries (botocore) do not.
logging.getLogger(__name__.rpartition(".")[0]).setLevel(logging.INFO)
logger = logging.getLogger(__name__)


@functools.cache
def dependencies() -> tuple[Settings, Clients]:
    """Cold start: a bad environment fails here, naming every variable to fix."""
    settings = Settings.from_environment(os.environ)
    clients = Clients(sagemaker=boto3.client("sagemaker"), s3=boto3.client("s3"), sns=boto3.client("sns"))
    return settings, clients


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Gates the training job named by a ``SageMaker Training Job State Change`` event."""
    settings, clients = dependencies()
    result = promote(event, settings, clients)
    logger.info(
        json.dumps({"message": "promotion", "request_id": getattr(context, "aws_request_id", None), **result})
    )
    return result


# Validated at cold start: a misconfigured function fails on its first invocation, naming every variable.
if environment.in_lambda(os.environ):
    dependencies()
