"""A CodeBuild project the way this project wants every one of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from .bundling import CopyBundler, bundling
from .nag import acknowledge_codebuild_defaults, acknowledge_findings

# The construct ID under which the project's resources keep the logical IDs they would have as the
# parent's own children (DatasetStager/Default/Project is DatasetStagerProject...): CDK leaves a path
# component named "Default" out of logical IDs.
IN_PLACE = "Default"


@dataclass(frozen=True, kw_only=True)
class CodeBuildProjectProps:
    """``sources``: what the build's source archive holds, by name (folders and single files); CDK stages
    the asset from ``source_dir`` (one of them, fingerprinted to cache the bundle).

    ``statements``: the role's own rights, besides CodeBuild's default grants (source, logs, reports, the
    key); ``findings``: the cdk-nag AwsSolutions-IAM5 findings of those rights, each with its reason.
    ``statements_first`` only orders the role's policy: the build's own statements before CodeBuild's
    default grants or after them (default); what the role may do is the same either way.
    """

    description: str
    role_description: str
    sources: dict[str, Path]
    source_dir: Path
    build_spec: dict[str, Any]
    key: kms.IKey
    compute_type: codebuild.ComputeType
    timeout: cdk.Duration
    log_retention: logs.RetentionDays
    environment_variables: dict[str, str] = field(default_factory=dict)
    concurrent_build_limit: int | None = None
    statements: tuple[iam.PolicyStatement, ...] = ()
    statements_first: bool = False
    findings: dict[str, str] = field(default_factory=dict)


class CodeBuildProject(Construct):
    """An S3-sourced build (deterministic source asset) on the standard Linux image, encrypted with the
    data key, logging to its own log group, with its own role and nothing managed attached.

    The role gets CodeBuild's default grants and ``statements``; every cdk-nag finding they raise is
    acknowledged on it, with its reason.
    """

    def __init__(self, scope: Construct, construct_id: str, *, props: CodeBuildProjectProps) -> None:
        super().__init__(scope, construct_id)
        self.source = s3_assets.Asset(
            self,
            "Source",
            path=str(props.source_dir),
            bundling=bundling(CopyBundler(props.sources), cdk.BundlingOutput.NOT_ARCHIVED),
            asset_hash_type=cdk.AssetHashType.OUTPUT,
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=props.log_retention, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description=props.role_description,
        )
        if props.statements_first:
            self._grant(props.statements)
        self.project = codebuild.Project(
            self,
            "Project",
            description=props.description,
            role=self.role,
            source=codebuild.Source.s3(bucket=self.source.bucket, path=self.source.s3_object_key),
            build_spec=codebuild.BuildSpec.from_object(props.build_spec),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0, compute_type=props.compute_type
            ),
            environment_variables={
                name: codebuild.BuildEnvironmentVariable(value=value)
                for name, value in props.environment_variables.items()
            },
            encryption_key=props.key,
            timeout=props.timeout,
            concurrent_build_limit=props.concurrent_build_limit,
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group)
            ),
        )
        if not props.statements_first:
            self._grant(props.statements)

        acknowledge_codebuild_defaults(self.role, self.project)
        acknowledge_findings(self.role, "AwsSolutions-IAM5", props.findings)

    def _grant(self, statements: tuple[iam.PolicyStatement, ...]) -> None:
        for statement in statements:
            self.role.add_to_policy(statement)
