"""The CodeBuild project that stages a dataset into the data bucket (started by a person or a rule)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from constructs import Construct

import tasks
from common.contract import DATASETS_PREFIX, RAW_PREFIX

from ..assets import ROOT, staging_source
from ..codebuild_project import IN_PLACE, CodeBuildProject, CodeBuildProjectProps
from ..config import StagingConfig
from ..nag import objects_finding


def build_spec(task: str = tasks.DEFAULT_TASK) -> dict[str, Any]:
    """Installs the staging tool's pins and stages the dataset; for a task other than the default one, in
    that task's layout (``--task``: multi-label datasets as metadata.csv splits)."""
    task_argument = "" if task == tasks.DEFAULT_TASK else f" --task {task}"
    return {
        "version": "0.2",
        "phases": {
            "install": {
                "runtime-versions": {"python": "3.12"},
                "commands": ["python -m pip install --quiet -r staging/requirements.txt"],
            },
            "build": {
                "commands": [
                    'python -m staging "$DATASET_SOURCE" --to "s3://$DATA_BUCKET/$DATASET_PREFIX"'
                    f"{task_argument}"
                    ' ${SOURCE_URL:+--source-url "$SOURCE_URL"}'
                ]
            },
        },
    }


BUILD_SPEC = build_spec()  # the default task's


@dataclass(frozen=True, kw_only=True)
class StagerProps:
    """``dataset_prefix`` and ``staging`` are the defaults; a build can override them per start."""

    bucket: s3.IBucket
    key: kms.IKey
    dataset_prefix: str
    staging: StagingConfig
    task: str = tasks.DEFAULT_TASK


class DatasetStager(Construct):
    """Downloads, validates and converts a dataset to the audiofolder layout under datasets/."""

    def __init__(self, scope: Construct, construct_id: str, *, props: StagerProps) -> None:
        super().__init__(scope, construct_id)
        bucket = props.bucket
        self.build = CodeBuildProject(
            self,
            IN_PLACE,
            props=CodeBuildProjectProps(
                description="Stage a dataset (esc50, fsd50k or a folder) into the data bucket's "
                "datasets/ prefix",
                role_description="AcousticShield dataset staging builds",
                sources=staging_source(),
                source_dir=ROOT / "staging",
                build_spec=build_spec(props.task),
                environment_variables={
                    "DATA_BUCKET": bucket.bucket_name,
                    "DATASET_PREFIX": props.dataset_prefix,
                    "DATASET_SOURCE": props.staging.source,
                    "SOURCE_URL": props.staging.source_url,
                },
                key=props.key,
                compute_type=codebuild.ComputeType.MEDIUM,
                timeout=cdk.Duration.hours(4),
                log_retention=logs.RetentionDays.THREE_MONTHS,
                statements=(
                    iam.PolicyStatement(
                        sid="ListDatasets",
                        actions=["s3:ListBucket"],
                        resources=[bucket.bucket_arn],
                        conditions={"StringLike": {"s3:prefix": [f"{DATASETS_PREFIX}*", f"{RAW_PREFIX}*"]}},
                    ),
                    iam.PolicyStatement(
                        sid="ReadRawClips",
                        actions=["s3:GetObject"],
                        resources=[bucket.arn_for_objects(f"{RAW_PREFIX}*")],
                    ),
                    iam.PolicyStatement(
                        sid="WriteDatasets",
                        actions=[
                            "s3:GetObject",
                            "s3:PutObject",
                            "s3:DeleteObject",
                            "s3:AbortMultipartUpload",
                        ],
                        resources=[bucket.arn_for_objects(f"{DATASETS_PREFIX}*")],
                    ),
                ),
                findings={
                    objects_finding(self, bucket, DATASETS_PREFIX): "Staging writes any clip of the dataset "
                    "under datasets/; the file names come from the dataset.",
                    objects_finding(self, bucket, RAW_PREFIX): "The `folder` source reads your own clips "
                    "from raw/; their names are yours.",
                },
            ),
        )
        self.source, self.log_group = self.build.source, self.build.log_group
        self.role, self.project = self.build.role, self.build.project
        # Writing SSE-KMS datasets needs the data key, whatever CodeBuild grants for its own artifacts.
        props.key.grant_encrypt_decrypt(self.role)
