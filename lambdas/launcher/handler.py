"""Lambda entry point: validated settings and clients, built once per container, then one call."""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from common import lambda_contract
from lambdas import environment

from . import orchestration
from .orchestration import Clients
from .settings import LaunchSettings

SERVICE = lambda_contract.LAUNCHER_SERVICE
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=("botocore",))
metrics = Metrics(namespace=lambda_contract.METRICS_NAMESPACE, service=SERVICE)


@functools.cache
def dependencies() -> tuple[LaunchSettings, Clients]:
    """Cold start: a bad environment fails here, naming every variable to fix."""
    settings = LaunchSettings.from_environment(os.environ)
    clients = Clients(sagemaker=boto3.client("sagemaker"), s3=boto3.client("s3"))
    return settings, clients


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: Any, context: LambdaContext) -> dict[str, Any]:
    """Starts a training or tuning job for a schedule, new-data or manual event."""
    # The request id names manual jobs: Lambda keeps it across its own retries.
    return orchestration.handle(
        event, context.aws_request_id, *dependencies(), logger=logger, metrics=metrics
    )


# Validated at cold start: a misconfigured function fails on its first invocation, naming every variable.
if environment.in_lambda(os.environ):
    dependencies()
