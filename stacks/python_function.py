"""A Python Lambda function the way this project wants every one of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from .bundling import FUNCTIONS_DIR, CopyBundler, bundling
from .nag import acknowledge, finding

# The newest Python runtime this CDK version offers (cdk-nag AwsSolutions-L1 checks the same).
RUNTIME = lambda_.Runtime.PYTHON_3_14


@dataclass(frozen=True, kw_only=True)
class PythonFunctionProps:
    """``package``: folder under functions/ holding handler.py. ``timeout_seconds``: default 60.

    ``files``: single files copied into the package under the given names (default none), e.g. the
    contract module the package shares with ``ml_code/``.
    """

    package: str
    description: str
    environment: dict[str, str]
    timeout_seconds: int = 60
    memory_size: int = 256
    reserved_concurrency: int | None = None
    log_retention: logs.RetentionDays = logs.RetentionDays.THREE_MONTHS
    files: dict[str, Path] = field(default_factory=dict)


class PythonFunction(Construct):
    """Lambda (boto3 only, arm64) with its own role, its own log group and nothing managed attached.

    The role gets only the right to write to this function's log group; callers add the rest.
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
            handler=f"{props.package}.handler.handler",
            code=lambda_.Code.from_asset(
                str(FUNCTIONS_DIR / props.package),
                bundling=bundling(
                    CopyBundler(
                        {
                            props.package: FUNCTIONS_DIR / props.package,
                            **{f"{props.package}/{name}": path for name, path in props.files.items()},
                        }
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
            tracing=lambda_.Tracing.DISABLED,
        )
