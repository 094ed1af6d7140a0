"""The CodeBuild project that stages a dataset into the data bucket (started by a person or a rule)."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from ..bundling import ML_CODE, CopyBundler, bundling
from ..config import StagingConfig
from ..data_stack import DATASETS_PREFIX, RAW_PREFIX
from ..nag import acknowledge_codebuild_defaults, acknowledge_findings, finding

BUILD_SPEC = {
    "version": "0.2",
    "phases": {
        "install": {
            "runtime-versions": {"python": "3.12"},
            "commands": ["python -m pip install --quiet -r ml_code/requirements-staging.txt"],
        },
        "build": {
            "commands": [
                'python -m ml_code.stage "$DATASET_SOURCE" --to "s3://$DATA_BUCKET/$DATASET_PREFIX"'
                ' ${SOURCE_URL:+--source-url "$SOURCE_URL"}'
            ]
        },
    },
}


@dataclass(frozen=True, kw_only=True)
class StagerProps:
    """``dataset_prefix`` and ``staging`` are the defaults; a build can override them per start."""

    bucket: s3.IBucket
    key: kms.IKey
    dataset_prefix: str
    staging: StagingConfig


class DatasetStager(Construct):
    """Downloads, validates and converts a dataset to the audiofolder layout under datasets/."""

    def __init__(self, scope: Construct, construct_id: str, *, props: StagerProps) -> None:
        super().__init__(scope, construct_id)
        self.source = s3_assets.Asset(
            self,
            "Source",
            path=str(ML_CODE),
            bundling=bundling(CopyBundler({"ml_code": ML_CODE}), cdk.BundlingOutput.NOT_ARCHIVED),
            asset_hash_type=cdk.AssetHashType.OUTPUT,
        )
        self.log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.THREE_MONTHS, removal_policy=cdk.RemovalPolicy.DESTROY
        )
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description="AcousticShield dataset staging builds",
        )
        self.project = codebuild.Project(
            self,
            "Project",
            description="Stage a dataset (esc50, fsd50k or a folder) into the data bucket's datasets/ prefix",
            role=self.role,
            source=codebuild.Source.s3(bucket=self.source.bucket, path=self.source.s3_object_key),
            build_spec=codebuild.BuildSpec.from_object(BUILD_SPEC),
            environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxBuildImage.STANDARD_7_0,
                compute_type=codebuild.ComputeType.MEDIUM,
            ),
            environment_variables={
                "DATA_BUCKET": codebuild.BuildEnvironmentVariable(value=props.bucket.bucket_name),
                "DATASET_PREFIX": codebuild.BuildEnvironmentVariable(value=props.dataset_prefix),
                "DATASET_SOURCE": codebuild.BuildEnvironmentVariable(value=props.staging.source),
                "SOURCE_URL": codebuild.BuildEnvironmentVariable(value=props.staging.source_url),
            },
            encryption_key=props.key,
            timeout=cdk.Duration.hours(4),
            logging=codebuild.LoggingOptions(
                cloud_watch=codebuild.CloudWatchLoggingOptions(log_group=self.log_group)
            ),
        )
        bucket = props.bucket
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ListDatasets",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{DATASETS_PREFIX}*", f"{RAW_PREFIX}*"]}},
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="ReadRawClips",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{RAW_PREFIX}*")],
            )
        )
        self.role.add_to_policy(
            iam.PolicyStatement(
                sid="WriteDatasets",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{DATASETS_PREFIX}*")],
            )
        )
        props.key.grant_encrypt_decrypt(self.role)

        acknowledge_codebuild_defaults(self.role, self.project)
        acknowledge_findings(
            self.role,
            "AwsSolutions-IAM5",
            {
                "Resource::"
                + finding(self, bucket.arn_for_objects(f"{DATASETS_PREFIX}*")): "Staging writes any "
                "clip of the dataset under datasets/; the file names come from the dataset.",
                "Resource::"
                + finding(self, bucket.arn_for_objects(f"{RAW_PREFIX}*")): "The `folder` source reads "
                "your own clips from raw/; their names are yours.",
            },
        )
