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

import tasks
from common.contract import EVALUATION_PREFIX, MODELS_PREFIX
from common.lambda_contract import NOTIFICATIONS, REGISTRATION_LEASE, PromoterEnvironment

from ..config import QualityGate, gate_rules
from ..nag import acknowledge_findings, finding, objects_finding
from ..python_function import PythonFunction, PythonFunctionProps
from ..queues import dead_letter_queue


@dataclass(frozen=True, kw_only=True)
class PromoterProps:
    """``inference_image`` and ``serving_instance_type`` describe how registered models are served;
    ``tuning_job_name_prefix`` names this app's tuning jobs (and so their trials); ``task`` (a task of tasks/)
    decides the metrics the gate checks, each at ``quality``'s threshold for it."""

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
    task: str = tasks.DEFAULT_TASK


class ModelPromoter(Construct):
    """Completed jobs, and the best trial of each completed tuning job, are gated and registered
    (Approved, Rejected or PendingManualApproval); failed and stopped jobs, tuning jobs without a
    completed trial and rules that found issues are announced on the topic."""

    def __init__(self, scope: Construct, construct_id: str, *, props: PromoterProps) -> None:
        super().__init__(scope, construct_id)
        self.handler = self._handler(props)
        self.function = self.handler.function
        resources = _Resources.of(props)
        for statement in _statements(props, resources):
            self.handler.role.add_to_policy(statement)
        self._acknowledge_wildcards(props, resources)
        self.dead_letters = dead_letter_queue(self, target="rule target")
        self.rule = self._training_rule(props)
        self.tuning_rule = self._tuning_rule(props)

    def _handler(self, props: PromoterProps) -> PythonFunction:
        q = props.quality
        return PythonFunction(
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
                    gate_rules=gate_rules(q, tasks.load(props.task)),
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

    def _acknowledge_wildcards(self, props: PromoterProps, resources: _Resources) -> None:
        """Why each wildcard of the handler's role stays within this app."""
        r = resources
        acknowledge_findings(
            self.handler.role,
            "AwsSolutions-IAM5",
            {
                f"Resource::{finding(self, r.packages)}": "Model package versions of this app's group only.",
                f"Resource::{finding(self, r.arn)}:training-job/{props.job_name_prefix}*": "Training jobs of "
                "this app only; their names are made per trigger at run time.",
                objects_finding(self, props.bucket, MODELS_PREFIX): "Reads each job's output archive under "
                "models/<job>/output/; job names are only known at run time.",
                objects_finding(self, props.bucket, EVALUATION_PREFIX): "Writes one evaluation report per "
                "job under evaluation/<job>/, and a marker per message sent about the job under "
                "evaluation/<job>/notifications/.",
                f"Resource::{finding(self, r.trials)}": "Trials of this app's tuning jobs, named after the "
                "tuning job by SageMaker: the promoter reads the winner.",
                f"Resource::{finding(self, r.tuning_jobs)}": "Tuning jobs of this app only; their names are "
                "made per trigger at run time.",
                f"Resource::{finding(self, r.notifications)}": "Removes only its own message markers, under "
                "evaluation/<job>/notifications/, when the message could not be sent.",
                f"Resource::{finding(self, r.registration_leases)}": "Each job's registration lease, "
                "evaluation/<job>/registration.lease.json; job names are only known at run time.",
            },
        )

    def _training_rule(self, props: PromoterProps) -> events.Rule:
        return events.Rule(
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

    def _tuning_rule(self, props: PromoterProps) -> events.Rule:
        return events.Rule(
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


@dataclass(frozen=True)
class _Resources:
    """The wildcard resources the handler's role is scoped to."""

    arn: str  # this account's and region's SageMaker ARNs, up to the resource type
    packages: str
    trials: str
    tuning_jobs: str
    notifications: str
    registration_leases: str

    @classmethod
    def of(cls, props: PromoterProps) -> _Resources:
        arn = f"arn:{cdk.Aws.PARTITION}:sagemaker:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}"
        return cls(
            arn=arn,
            packages=f"{arn}:model-package/{props.group_name}/*",
            # A tuning job's trials are named after it: <tuning job>-<NNN>-<suffix>.
            trials=f"{arn}:training-job/{props.tuning_job_name_prefix}*",
            tuning_jobs=f"{arn}:hyper-parameter-tuning-job/{props.tuning_job_name_prefix}*",
            notifications=props.bucket.arn_for_objects(f"{EVALUATION_PREFIX}*/{NOTIFICATIONS}/*"),
            registration_leases=props.bucket.arn_for_objects(f"{EVALUATION_PREFIX}*/{REGISTRATION_LEASE}"),
        )


def _statements(props: PromoterProps, resources: _Resources) -> list[iam.PolicyStatement]:
    """The handler's rights, in the order its policy lists them."""
    r = resources
    return [
        iam.PolicyStatement(
            sid="ReadOwnTrainingJobs",
            actions=["sagemaker:DescribeTrainingJob"],
            resources=[f"{r.arn}:training-job/{props.job_name_prefix}*", r.trials],
        ),
        iam.PolicyStatement(
            sid="ReadOwnTuningJobs",
            actions=["sagemaker:DescribeHyperParameterTuningJob"],
            resources=[r.tuning_jobs],
        ),
        iam.PolicyStatement(
            sid="RegisterModels",
            actions=["sagemaker:CreateModelPackage"],
            resources=[r.packages, f"{r.arn}:model-package-group/{props.group_name}"],
        ),
        iam.PolicyStatement(
            sid="ReadModels", actions=["sagemaker:DescribeModelPackage"], resources=[r.packages]
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
            resources=[r.notifications],
        ),
        iam.PolicyStatement(
            # Takes over an expired registration lease, and gives its own up (lambdas/lease.py).
            sid="HoldRegistrationLeases",
            actions=["s3:GetObject", "s3:DeleteObject"],
            resources=[r.registration_leases],
        ),
        iam.PolicyStatement(
            sid="UseDataKey",
            actions=["kms:Decrypt", "kms:GenerateDataKey"],
            resources=[props.key.key_arn],
        ),
        iam.PolicyStatement(sid="Notify", actions=["sns:Publish"], resources=[props.topic.topic_arn]),
    ]
