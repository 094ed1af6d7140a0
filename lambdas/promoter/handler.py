"""Lambda entry point: validated settings and clients, built once per container, then one call."""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext

from common import lambda_contract
from lambdas import environment

from . import orchestration
from .orchestration import Clients
from .settings import Settings

SERVICE = lambda_contract.PROMOTER_SERVICE
logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE, patch_modules=("botocore",))
metrics = Metrics(namespace=lambda_contract.METRICS_NAMESPACE, service=SERVICE)
# Most events decide nothing (a trial, an unfinished job, a redelivery) and so count nothing: expected.
warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)


@functools.cache
def dependencies() -> tuple[Settings, Clients]:
    """Cold start: a bad environment fails here, naming every variable to fix."""
    settings = Settings.from_environment(os.environ)
    clients = Clients(sagemaker=boto3.client("sagemaker"), s3=boto3.client("s3"), sns=boto3.client("sns"))
    return settings, clients


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Gates the training job (or the tuning job's winner) named by a SageMaker state-change event."""
    return orchestration.handle(
        event, context.aws_request_id, *dependencies(), logger=logger, metrics=metrics
    )


# Validated at cold start: a misconfigured function fails on its first invocation, naming every variable.
if environment.in_lambda(os.environ):
    dependencies()
