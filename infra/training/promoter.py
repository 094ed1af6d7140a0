"""The promoter Lambda: gates every finished training job (and every finished tuning job's winner) and
registers the model it produced; announces rules that found issues."""

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

from common.contract import EVALUATION_PREFIX, MODELS_PREFIX
from common.lambda_contract import NOTIFICATIONS, REGISTRATION_LEASE, PromoterEnvironment

from ..config import QualityGate, gate_rules
from ..nag import acknowledge_findings, finding, objects_finding
from ..python_function import PythonFunction, PythonFunctionProps
from ..queues import dead_letter_queue


@dataclass(frozen=True, kw_only=True)
class PromoterProps:
    """``inference_image`` and ``serving_instance_type`` describe how registered models are served;
    ``tuning_job_name_prefix`` names this app's tuning jobs (and so their trials)."""

    group_name: str
    job_name_prefix: str
    tuning_job_name_prefix: str
    quality: QualityGate
    topic: sns.ITopic
    bucket: s3.IBucket
    key: kms.IKey
    inference_image: str
    serving_instance_type: str
    reserved_concurrency: int | None = None  # None: the account's unreserved pool


class ModelPromoter(Construct):
    """Completed jobs, and the best trial of each completed tuning job, are gated and registered
    (Approved, Rejected or PendingManualApproval); failed and stopped jobs, tuning jobs without a
    completed trial and rules that found issues are announced on the topic."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PromoterProps) -> None:
        super().__init__(scope, construct_id)
        q = props.quality
        self.handler = PythonFunction(
            self,
            "Handler",
            props=PythonFunctionProps(
                package="promoter",
                # The contracts (content types, metric and health rule names, the promoter's records), beside the code.
                description="Gates AcousticShield training jobs and registers their models",
                # Two deliveries of one event are serialized by the job's registration lease, not by this.
                reserved_concurrency=props.reserved_concurrency,
                wildcard_reason="sagemaker:ListModelPackages supports no resource-level permissions.",
                environment=PromoterEnvironment(
                    model_package_group=props.group_name,
                    job_name_prefix=props.job_name_prefix,
                    tuning_job_prefix=props.tuning_job_name_prefix,
                    gate_rules=gate_rules(q),
                    max_regression=q.max_regression,
                    manual_approval=q.manual_approval,
                    health_blocking_rules=list(q.health_blocking_rules),
                    topic_arn=props.topic.topic_arn,
                    inference_image=props.inference_image,
                    serving_instance_type=props.serving_instance_type,
                    data_bucket=props.bucket.bucket_name,
                    evaluation_prefix=EVALUATION_PREFIX,
                ).variables(),
            ),
        )
        self.function = self.handler.function
        role = self.handler.role
        arn = f"arn:{cdk.Aws.PARTITION}:sagemaker:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}"
        packages = f"{arn}:model-package/{props.group_name}/*"
        # A tuning job's trials are named after it: <tuning job>-<NNN>-<suffix>.
        trials = f"{arn}:training-job/{props.tuning_job_name_prefix}*"
        tuning_jobs = f"{arn}:hyper-parameter-tuning-job/{props.tuning_job_name_prefix}*"
        notifications = props.bucket.arn_for_objects(f"{EVALUATION_PREFIX}*/{NOTIFICATIONS}/*")
        registration_leases = props.bucket.arn_for_objects(f"{EVALUATION_PREFIX}*/{REGISTRATION_LEASE}")
        statements = [
            iam.PolicyStatement(
                sid="ReadOwnTrainingJobs",
                actions=["sagemaker:DescribeTrainingJob"],
                resources=[f"{arn}:training-job/{props.job_name_prefix}*", trials],
            ),
            iam.PolicyStatement(
                sid="ReadOwnTuningJobs",
                actions=["sagemaker:DescribeHyperParameterTuningJob"],
                resources=[tuning_jobs],
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
                # A message that could not be sent gives up its marker, so that the retry sends it.
                sid="WithdrawNotificationMarkers",
                actions=["s3:DeleteObject"],
                resources=[notifications],
            ),
            iam.PolicyStatement(
                # Takes over an expired registration lease, and gives its own up (lambdas/lease.py).
                sid="HoldRegistrationLeases",
                actions=["s3:GetObject", "s3:DeleteObject"],
                resources=[registration_leases],
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
                f"Resource::{finding(self, packages)}": "Model package versions of this app's group only.",
                f"Resource::{finding(self, arn)}:training-job/{props.job_name_prefix}*": "Training jobs of this "
                "app only; their names are made per trigger at run time.",
                objects_finding(self, props.bucket, MODELS_PREFIX): "Reads each job's output archive under "
                "models/<job>/output/; job names are only known at run time.",
                objects_finding(self, props.bucket, EVALUATION_PREFIX): "Writes one evaluation report per "
                "job under evaluation/<job>/, and a marker per message sent about the job under "
                "evaluation/<job>/notifications/.",
                f"Resource::{finding(self, trials)}": "Trials of this app's tuning jobs, named after the "
                "tuning job by SageMaker: the promoter reads the winner.",
                f"Resource::{finding(self, tuning_jobs)}": "Tuning jobs of this app only; their names are "
                "made per trigger at run time.",
                f"Resource::{finding(self, notifications)}": "Removes only its own message markers, under "
                "evaluation/<job>/notifications/, when the message could not be sent.",
                f"Resource::{finding(self, registration_leases)}": "Each job's registration lease, "
                "evaluation/<job>/registration.lease.json; job names are only known at run time.",
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
                    # Finished, or a rule found issues (SageMaker sends the state again when a rule's
                    # status changes, also while the job runs and after it ended).
                    "$or": [
                        {"TrainingJobStatus": ["Completed", "Failed", "Stopped"]},
                        {"DebugRuleEvaluationStatuses": {"RuleEvaluationStatus": ["IssuesFound"]}},
                        {"ProfilerRuleEvaluationStatuses": {"RuleEvaluationStatus": ["IssuesFound"]}},
                    ],
                },
            ),
            targets=[self._target()],
        )
        self.tuning_rule = events.Rule(
            self,
            "TuningFinished",
            description="Register the best trial of finished AcousticShield tuning jobs",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker HyperParameter Tuning Job State Change"],
                detail={
                    "HyperParameterTuningJobName": [{"prefix": props.tuning_job_name_prefix}],
                    "HyperParameterTuningJobStatus": ["Completed", "Failed", "Stopped"],
                },
            ),
            targets=[self._target()],
        )

    def _target(self) -> targets.LambdaFunction:
        return targets.LambdaFunction(
            self.function,
            dead_letter_queue=self.dead_letters,
            retry_attempts=4,
            max_event_age=cdk.Duration.hours(6),
        )
