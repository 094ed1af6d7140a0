"""A Python Lambda function the way this project wants every one of them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from .assets import ROOT, lambda_package
from .bundling import NATIVE_SUFFIXES, CopyBundler, bundling
from .nag import acknowledge, finding

# The newest Python runtime this CDK version offers (cdk-nag AwsSolutions-L1 checks the same).
RUNTIME = lambda_.Runtime.PYTHON_3_14

# AWS Lambda Powertools reaches every function inside its own asset, copied from the installed package
# (requirements-dev.txt pins it): the parts the handlers use are pure Python, so one copy runs on the
# arm64 Python 3.14 runtime and in the rehearsal, which imports the deployed bundle on the local Python.
# Not the official layer: the rehearsal would run the locally installed copy instead of the deployed one,
# and its ARN differs per region and Python version. Not platform wheels: parser needs pydantic-core, a
# compiled wheel, so the event models are Powertools' pure-Python event-source data classes. Tracer needs
# the X-Ray SDK and wrapt, both pure Python once wrapt's optional C extension (built for this machine)
# is left out: wrapt then uses its own Python implementation.
POWERTOOLS_VERSION = "3.37.0"
POWERTOOLS_PARTS = (
    "__init__.py",
    "package_logger.py",
    "py.typed",
    "exceptions",
    "logging",
    "metrics",
    "middleware_factory",
    "shared",
    "tracing",
    "warnings",
    "utilities/__init__.py",
    "utilities/data_classes",
    "utilities/jmespath_utils",
    "utilities/typing",
)
# Powertools' own dependencies that the runtime lacks (boto3, botocore and jmespath come with it).
POWERTOOLS_DEPENDENCIES = ("aws_xray_sdk", "wrapt", "typing_extensions")


def _installed(module: str) -> Path:
    """Where ``module`` is installed: its package folder, or its single file."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"{module} is not installed: pip install -r requirements-dev.txt")
    origin = Path(spec.origin)
    return origin.parent if spec.submodule_search_locations else origin


def powertools_files() -> dict[str, Path]:
    """Powertools' parts and dependencies under their import names, to copy into a function's asset."""
    version = importlib.metadata.version("aws-lambda-powertools")
    if version != POWERTOOLS_VERSION:
        raise ValueError(
            f"aws-lambda-powertools {version} is installed; the functions bundle {POWERTOOLS_VERSION}: "
            "pip install -r requirements-dev.txt"
        )
    root = _installed("aws_lambda_powertools")
    files = {f"aws_lambda_powertools/{part}": root / part for part in POWERTOOLS_PARTS}
    for module in POWERTOOLS_DEPENDENCIES:
        path = _installed(module)
        files[path.name] = path
    return files


@dataclass(frozen=True, kw_only=True)
class PythonFunctionProps:
    """``package``: folder under lambdas/ holding handler.py; the asset is ``assets.lambda_package`` (its own
    code, the Lambdas' ground floor and the contracts) with Powertools. ``timeout_seconds``: default 60.
    ``wildcard_reason``: why the caller's own statements need ``Resource::*`` (default none: only X-Ray's do).
    """

    package: str
    description: str
    environment: dict[str, str]
    timeout_seconds: int = 60
    memory_size: int = 256
    reserved_concurrency: int | None = None
    log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS
    wildcard_reason: str = ""


class PythonFunction(Construct):
    """Lambda (boto3 and Powertools, arm64, actively traced) with its own role, its own log group and
    nothing managed attached.

    The role gets only the rights to write to this function's log group and to send its traces to X-Ray;
    callers add the rest.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: PythonFunctionProps) -> None:
        super().__init__(scope, construct_id)
        self.log_group = logs.LogGroup(
            self, "Logs", retention=props.log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=props.description,
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[f"{self.log_group.log_group_arn}:*"],
            )
        )
        acknowledge(
            self.role,
            f"AwsSolutions-IAM5[Resource::{finding(self, self.log_group.log_group_arn)}:*]",
            "Lambda names its log streams per execution environment, inside this function's own log group.",
        )
        self.function = lambda_.Function(
            self,
            "Function",
            description=props.description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.ARM_64,
            handler=f"lambdas.{props.package}.handler.handler",
            code=lambda_.Code.from_asset(
                str(ROOT / "lambdas" / props.package),
                bundling=bundling(
                    CopyBundler(
                        {**lambda_package(props.package), **powertools_files()},
                        skipped_suffixes=NATIVE_SUFFIXES,
                    ),
                    cdk.BundlingOutput.NOT_ARCHIVED,
                ),
                asset_hash_type=cdk.AssetHashType.OUTPUT,
            ),
            role=self.role,
            log_group=self.log_group,
            timeout=cdk.Duration.seconds(props.timeout_seconds),
            memory_size=props.memory_size,
            reserved_concurrent_executions=props.reserved_concurrency,
            environment=props.environment,
            tracing=lambda_.Tracing.ACTIVE,
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            " ".join(
                reason
                for reason in (
                    "xray:PutTraceSegments and xray:PutTelemetryRecords (active tracing, added by CDK) "
                    "support no resource-level permissions.",
                    props.wildcard_reason,
                )
                if reason
            ),
        )
