"""Deploy after approval: a CodeBuild project runs `cdk deploy` of the Serving stack with the approved model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from ..bundling import CopyBundler, bundling
from ..nag import acknowledge_codebuild_defaults, acknowledge_findings, finding
from ..queues import dead_letter_queue

ROOT = Path(__file__).resolve().parents[2]
# What `cdk deploy` needs: the app, its pinned dependencies and every source the stacks bundle.
APP_SOURCES = (
    "app.py",
    "cdk.json",
    "requirements.txt",
    "package.json",
    "package-lock.json",
    "stacks",
    "functions",
    "ml_code",
)
# The roles `cdk bootstrap` creates (default qualifier): deploy, file publishing, lookup, ...
BOOTSTRAP_ROLES = "cdk-hnb659fds-*-role"


def build_spec(*, env_name: str, stack_name: str) -> dict[str, Any]:
    """Installs the pinned toolchain and deploys the Serving stack, nothing else, with the given package."""
    return {
        "version": "0.2",
        "env": {"variables": {"CDK_DISABLE_CLI_TELEMETRY": "true"}},
        "phases": {
            "install": {
                "runtime-versions": {"python": "3.12", "nodejs": "20"},
                "commands": [
                    "python -m pip install --quiet -r requirements.txt",
                    "npm ci --no-audit --no-fund",
                ],
            },
            "build": {
                "commands": [
                    'test -n "$MODEL_PACKAGE_ARN" || '
                    '{ echo "start the build with MODEL_PACKAGE_ARN=<approved model package ARN>"; exit 1; }',
                    # --exclusively: the Data stack (a dependency) is never touched from here.
                    f"npx cdk deploy {stack_name} --exclusively -c env={env_name}"
                    ' -c model_package_arn="$MODEL_PACKAGE_ARN" --require-approval never --no-notices',
                ]
            },
        },
    }


@dataclass(frozen=True, kw_only=True)
class DeployerProps:
    """``stack_name``: the Serving stack to deploy; ``group_name``: the model package group to watch."""

    env_name: str
    stack_name: str
    group_name: str
    key: kms.IKey


class ModelDeployer(Construct):
    """Runs the same `cdk deploy` a person would, whenever a package of the group becomes Approved.

    The build's role can do nothing itself but assume the CDK bootstrap roles: the deployment runs with
    the rights `cdk bootstrap` granted, exactly as a human deploy does.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: DeployerProps) -> None:
        super().__init__(scope, construct_id)
        self.source = s3_assets.Asset(
            self,
            "Source",
            path=str(ROOT / "stacks"),
            bundling=bundling(
                CopyBundler({name: ROOT / name for name in APP_SOURCES}), cdk.BundlingOutput.NOT_ARCHIVED
            ),
            asset_hash_type=cdk.AssetHashType.OUTPUT,
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.SIX_MONTHS, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description="AcousticShield model deployments: assumes the CDK bootstrap roles only",
        )
        bootstrap_roles = (
            f"arn:{cdk.Aws.PARTITION}:iam::{cdk.Aws.ACCOUNT_ID}:role/"
            f"{BOOTSTRAP_ROLES}-{cdk.Aws.ACCOUNT_ID}-{cdk.Aws.REGION}"
        )
        self.role.add_to_policy(
            iam.PolicyStatement(sid="AssumeCdkRoles", actions=["sts:AssumeRole"], resources=[bootstrap_roles])
        )
        self.project = codebuild.Project(
            self,
            "Project",
            description=f"Deploy {props.stack_name} with an approved model package (cdk deploy)",
            role=self.role,
            source=codebuild.Source.s3(bucket=self.source.bucket, path=self.source.s3_object_key),
            build_spec=codebuild.BuildSpec.from_object(
                build_spec(env_name=props.env_name, stack_name=props.stack_name)
            ),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.SMALL,
            ),
            environment_variables={"MODEL_PACKAGE_ARN": codebuild.BuildEnvironmentVariable(value="")},
            encryption_key=props.key,
            # A blue/green update with its baking periods takes up to about an hour and a half.
            timeout=cdk.Duration.hours(2),
            # Two approvals in a row must not race two deployments of one stack: the second start is
            # throttled and EventBridge retries it once the first is done.
            concurrent_build_limit=1,
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group)
            ),
        )

        self.dead_letters = dead_letter_queue(self, target="approval rule")
        package_arn = events.EventField.from_path("$.detail.ModelPackageArn")
        self.rule = events.Rule(
            self,
            "OnApproval",
            description=f"Deploy approved {props.group_name} model packages",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Model Package State Change"],
                detail={
                    "ModelPackageGroupName": [props.group_name],
                    "ModelApprovalStatus": ["Approved"],
                },
            ),
            targets=[
                targets.CodeBuildProject(
                    self.project,
                    event=events.RuleTargetInput.from_object(
                        {
                            "environmentVariablesOverride": [
                                {"name": "MODEL_PACKAGE_ARN", "type": "PLAINTEXT", "value": package_arn}
                            ]
                        }
                    ),
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=10,
                    max_event_age=cdk.Duration.hours(6),
                )
            ],
        )

        acknowledge_codebuild_defaults(self.role, self.project)
        acknowledge_findings(
            self.role,
            "AwsSolutions-IAM5",
            {
                f"Resource::{finding(self, bootstrap_roles)}": "The CDK bootstrap roles of this account "
                "and region (deploy, file publishing, lookup); cdk deploy picks the one each step needs.",
            },
        )
