"""The SageMaker training execution role: exactly the prefixes, key, image and logs a job needs."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from ..data_stack import CHECKPOINTS_PREFIX, DATASETS_PREFIX, MODELS_PREFIX
from ..images import ImageRef
from ..nag import acknowledge_findings, finding
from ..sagemaker_runtime import UNSCOPED_REASON, log_group_arn, runtime_statements

# SageMaker's fixed log group for every training job.
LOG_GROUP = "/aws/sagemaker/TrainingJobs"


@dataclass(frozen=True, kw_only=True)
class ExecutionRoleProps:
    """``source``: the sourcedir.tar.gz asset; ``image``: the training image (for ECR pull rights)."""

    bucket: s3.IBucket
    key: kms.IKey
    image: ImageRef
    source: s3_assets.Asset


class TrainingExecutionRole(Construct):
    """No managed policies: reads datasets/, writes models/ and checkpoints/."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ExecutionRoleProps) -> None:
        super().__init__(scope, construct_id)
        bucket = props.bucket
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="AcousticShield training jobs",
        )
        statements = [
            iam.PolicyStatement(
                sid="ListOwnPrefixes",
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{DATASETS_PREFIX}*", f"{CHECKPOINTS_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                sid="ReadDatasets",
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{DATASETS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="WriteOutputs",
                actions=["s3:PutObject", "s3:AbortMultipartUpload"],
                # Only models/: evaluation/ is the promoter's, so a job cannot forge its own report.
                resources=[bucket.arn_for_objects(f"{MODELS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="SyncCheckpoints",
                actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                resources=[bucket.arn_for_objects(f"{CHECKPOINTS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="ReadSourceDir",
                actions=["s3:GetObject"],
                resources=[
                    f"arn:{cdk.Aws.PARTITION}:s3:::{props.source.s3_bucket_name}/{props.source.s3_object_key}"
                ],
            ),
            iam.PolicyStatement(
                sid="UseDataKey",
                actions=["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey"],
                resources=[props.key.key_arn],
            ),
            iam.PolicyStatement(
                sid="EncryptVolumes",
                actions=["kms:CreateGrant"],
                resources=[props.key.key_arn],
                conditions={"Bool": {"kms:GrantIsForAWSResource": "true"}},
            ),
            *runtime_statements(
                image=props.image,
                log_group=LOG_GROUP,
                image_sid="PullTrainingImage",
                logs_sid="JobLogs",
                metrics_sid="JobMetrics",
            ),
        ]
        for statement in statements:
            self.role.add_to_policy(statement)

        def objects(prefix: str) -> str:
            return "Resource::" + finding(self, bucket.arn_for_objects(f"{prefix}*"))

        acknowledge_findings(
            self.role,
            "AwsSolutions-IAM5",
            {
                "Resource::*": UNSCOPED_REASON,
                objects(DATASETS_PREFIX): "Reads any object under the datasets/ "
                "prefix: channel contents are only known at run time.",
                objects(MODELS_PREFIX): "SageMaker writes job outputs under "
                "models/<job>/ for job names chosen at run time.",
                objects(CHECKPOINTS_PREFIX): "Spot checkpoints per job under checkpoints/<job>/.",
                "Resource::" + finding(self, log_group_arn(LOG_GROUP)): "Log streams are created per job "
                "at run time in SageMaker's fixed log group.",
            },
        )
