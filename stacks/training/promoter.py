"""The promoter Lambda: gates every finished training job and registers the model it produced."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..config import QualityGate
from ..data_stack import EVALUATION_PREFIX, MODELS_PREFIX
from ..nag import acknowledge_findings, finding
from ..python_function import PythonFunction, PythonFunctionProps
from ..queues import dead_letter_queue


@dataclass(frozen=True, kw_only=True)
class PromoterProps:
    """``inference_image`` and ``serving_instance_type`` describe how registered models are served."""

    group_name: str
    job_name_prefix: str
    quality: QualityGate
    topic: sns.ITopic
    bucket: s3.IBucket
    key: kms.IKey
    inference_image: str
    serving_instance_type: str


class ModelPromoter(Construct):
    """Completed jobs are gated and registered (Approved, Rejected or PendingManualApproval);
    failed and stopped jobs are announced on the topic with their reason."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PromoterProps) -> None:
        super().__init__(scope, construct_id)
        q = props.quality
        self.handler = PythonFunction(
            self,
            "Handler",
            props=PythonFunctionProps(
                package="promoter",
                description="Gates AcousticShield training jobs and registers their models",
                # Serialises two deliveries of one event, which could otherwise both register a package.
                reserved_concurrency=1,
                environment={
                    "MODEL_PACKAGE_GROUP": props.group_name,
                    "JOB_NAME_PREFIX": props.job_name_prefix,
                    "MIN_ACCURACY": str(q.min_accuracy),
                    "MIN_F1": str(q.min_f1),
                    "MIN_CLIP_ACCURACY": str(q.min_clip_accuracy),
                    "MAX_REGRESSION": str(q.max_regression),
                    "MANUAL_APPROVAL": "true" if q.manual_approval else "false",
                    "TOPIC_ARN": props.topic.topic_arn,
                    "INFERENCE_IMAGE": props.inference_image,
                    "SERVING_INSTANCE_TYPE": props.serving_instance_type,
                    "DATA_BUCKET": props.bucket.bucket_name,
                    "EVALUATION_PREFIX": EVALUATION_PREFIX,
                },
            ),
        )
        self.function = self.handler.function
        role = self.handler.role
        arn = f"arn:{cdk.Aws.PARTITION}:sagemaker:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}"
        packages = f"{arn}:model-package/{props.group_name}/*"
        statements = [
            iam.PolicyStatement(
                sid="ReadOwnTrainingJobs",
                actions=["sagemaker:DescribeTrainingJob"],
                resources=[f"{arn}:training-job/{props.job_name_prefix}*"],
            ),
            iam.PolicyStatement(
                sid="RegisterModels",
                actions=["sagemaker:CreateModelPackage"],
                resources=[packages, f"{arn}:model-package-group/{props.group_name}"],
            ),
            iam.PolicyStatement(
                sid="ReadModels", actions=["sagemaker:DescribeModelPackage"], resources=[packages]
            ),
            iam.PolicyStatement(sid="FindModels", actions=["sagemaker:ListModelPackages"], resources=["*"]),
            iam.PolicyStatement(
                sid="ListJobOutputs",
                actions=["s3:ListBucket"],
                resources=[props.bucket.bucket_arn],
                conditions={"StringLike": {"s3:prefix": [f"{MODELS_PREFIX}*"]}},
            ),
            iam.PolicyStatement(
                sid="ReadJobOutputs",
                actions=["s3:GetObject"],
                resources=[props.bucket.arn_for_objects(f"{MODELS_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="WriteEvaluations",
                actions=["s3:PutObject"],
                resources=[props.bucket.arn_for_objects(f"{EVALUATION_PREFIX}*")],
            ),
            iam.PolicyStatement(
                sid="UseDataKey",
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=[props.key.key_arn],
            ),
            iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[props.topic.topic_arn]),
        ]
        for statement in statements:
            role.add_to_policy(statement)
        acknowledge_findings(
            role,
            "AwsSolutions-IAM5",
            {
                "Resource::*": "sagemaker:ListModelPackages supports no resource-level permissions.",
                f"Resource::{finding(self, packages)}": "Model package versions of this app's group only.",
                f"Resource::{finding(self, arn)}:training-job/{props.job_name_prefix}*": "Training jobs of this "
                "app only; their names are made per trigger at run time.",
                "Resource::"
                + finding(self, props.bucket.arn_for_objects(f"{MODELS_PREFIX}*")): "Reads each job's output "
                "archive under models/<job>/output/; job names are only known at run time.",
                "Resource::"
                + finding(
                    self, props.bucket.arn_for_objects(f"{EVALUATION_PREFIX}*")
                ): "Writes one evaluation report per job under evaluation/<job>/.",
            },
        )

        self.dead_letters = dead_letter_queue(self, target="rule target")
        self.rule = events.Rule(
            self,
            "TrainingFinished",
            description="Gate and register finished AcousticShield training jobs",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Training Job State Change"],
                detail={
                    "TrainingJobName": [{"prefix": props.job_name_prefix}],
                    "TrainingJobStatus": ["Completed", "Failed", "Stopped"],
                },
            ),
            targets=[
                targets.LambdaFunction(
                    self.function,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=4,
                    max_event_age=cdk.Duration.hours(6),
                )
            ],
        )
