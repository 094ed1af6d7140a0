"""The SageMaker training execution role: exactly the prefixes, key, images and logs a job needs."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from common.contract import (
    CHECKPOINTS_PREFIX,
    DATASETS_PREFIX,
    DEBUG_PREFIX,
    MODELS_PREFIX,
    PROFILER_PREFIX,
    TENSORBOARD_PREFIX,
)

from ..images import ImageRef
from ..nag import acknowledge_findings, finding, objects_finding
from ..sagemaker_runtime import UNSCOPED_REASON, log_group_arn, runtime_statements

# SageMaker's fixed log group for every training job.
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# Debugger and Profiler rules run as processing jobs, with the training job's role, logging here.
RULE_LOG_GROUP = "/aws/sagemaker/ProcessingJobs"


@dataclass(frozen=True, kw_only=True)
class ExecutionRoleProps:
    """``source``: the sourcedir.tar.gz asset; ``image``: the training image (for ECR pull rights).

    ``rule_image``: the Debugger rule evaluator image, when jobs carry rules (default none); then
    ``debug_outputs`` / ``profiler_outputs`` (default False) open the ``debug/`` / ``profiler/`` prefixes.
    """

    bucket: s3.IBucket
    key: kms.IKey
    image: ImageRef
    source: s3_assets.Asset
    rule_image: ImageRef | None = None
    debug_outputs: bool = False
    profiler_outputs: bool = False


class TrainingExecutionRole(Construct):
    """No managed policies: reads datasets/, writes models/, checkpoints/ and tensorboard/ (and debug/,
    profiler/ when rules or profiling are on)."""

    def __init__(self, scope: Construct, construct_id: str, *, props: ExecutionRoleProps) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="AcousticShield training jobs",
        )
        rule_prefixes = [
            prefix
            for prefix, wanted in (
                (DEBUG_PREFIX, props.debug_outputs),
                (PROFILER_PREFIX, props.profiler_outputs),
            )
            if wanted
        ]
        statements = _job_statements(props)
        if rule_prefixes:
            statements += _rule_output_statements(props.bucket, rule_prefixes)
        if props.rule_image is not None:
            statements += _rule_evaluator_statements(props.rule_image)
        for statement in statements:
            self.role.add_to_policy(statement)
        self._acknowledge_findings(props, rule_prefixes)

    def _acknowledge_findings(self, props: ExecutionRoleProps, rule_prefixes: list[str]) -> None:
        """Why each wildcard the role keeps is needed: per-job names and paths chosen at run time."""

        def objects(prefix: str) -> str:
            return objects_finding(self, props.bucket, prefix)

        rule_findings = {
            objects(prefix): f"Debugger and Profiler write per job under {prefix}<job>/ and the job's rules "
            "read there; job names are chosen at run time."
            for prefix in rule_prefixes
        }
        if props.rule_image is not None:
            rule_findings["Resource::" + finding(self, log_group_arn(RULE_LOG_GROUP))] = (
                "Rule evaluation jobs log per job in SageMaker's fixed processing-job log group."
            )

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
                objects(TENSORBOARD_PREFIX): "SageMaker uploads TensorBoard event files per job under "
                "tensorboard/<job>/tensorboard-output/ for job names chosen at run time.",
                "Resource::" + finding(self, log_group_arn(LOG_GROUP)): "Log streams are created per job "
                "at run time in SageMaker's fixed log group.",
                **rule_findings,
            },
        )


def _job_statements(props: ExecutionRoleProps) -> list[iam.PolicyStatement]:
    """What every job needs: its data prefixes, the source dir, the data key, its image, logs and metrics."""
    bucket = props.bucket
    return [
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
            sid="WriteTensorBoard",
            actions=["s3:PutObject", "s3:AbortMultipartUpload"],
            # Written only: SageMaker uploads the job's event files while it runs; nothing reads them back.
            resources=[bucket.arn_for_objects(f"{TENSORBOARD_PREFIX}*")],
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


def _rule_output_statements(bucket: s3.IBucket, rule_prefixes: list[str]) -> list[iam.PolicyStatement]:
    """The Debugger hook's and the Profiler's prefixes, for the job and the rules that read them."""
    return [
        iam.PolicyStatement(
            sid="ListRuleOutputs",
            actions=["s3:ListBucket"],
            resources=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in rule_prefixes]}},
        ),
        iam.PolicyStatement(
            # The job writes tensors or system metrics; its rules read them and write their reports.
            sid="WriteRuleOutputs",
            actions=["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"],
            resources=[bucket.arn_for_objects(f"{prefix}*") for prefix in rule_prefixes],
        ),
    ]


def _rule_evaluator_statements(rule_image: ImageRef) -> list[iam.PolicyStatement]:
    """The rule evaluation jobs (run with this role): their image and their log group."""
    return [
        iam.PolicyStatement(
            sid="PullRuleEvaluatorImage",
            actions=[
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability",
            ],
            resources=[rule_image.repository_arn],
        ),
        iam.PolicyStatement(
            sid="RuleEvaluationLogs",
            actions=[
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            resources=[log_group_arn(RULE_LOG_GROUP)],
        ),
    ]
